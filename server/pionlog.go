package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// LevelTrace is below slog's Debug. pion logs every packet at its debug and
// trace levels, so those go here and stay silent even with --log-level debug.
const LevelTrace = slog.LevelDebug - 4

// pionLoggerFactory adapts pion's logging to an injected slog.Logger.
type pionLoggerFactory struct{ log *slog.Logger }

var _ logging.LoggerFactory = pionLoggerFactory{}

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	l := f.log.With("pion", scope)
	return pionLogger{log: l, trace: l.Enabled(context.Background(), LevelTrace)}
}

// pionLogger maps pion levels to slog levels: trace and debug to LevelTrace,
// info to Debug (pion's info lines are per request), warn and error as is.
// Whether trace is on is read once (ferry's level is fixed at start): pion
// makes several trace and debug calls per relayed packet.
type pionLogger struct {
	log   *slog.Logger
	trace bool
}

var _ logging.LeveledLogger = pionLogger{}

func (l pionLogger) emit(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

func (l pionLogger) emitf(level slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
}

func (l pionLogger) traceMsg(msg string) {
	if l.trace {
		l.emit(LevelTrace, msg)
	}
}

func (l pionLogger) tracef(format string, args ...any) {
	if l.trace {
		l.emitf(LevelTrace, format, args...)
	}
}

func (l pionLogger) Trace(msg string)                  { l.traceMsg(msg) }
func (l pionLogger) Tracef(format string, args ...any) { l.tracef(format, args...) }
func (l pionLogger) Debug(msg string)                  { l.traceMsg(msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.tracef(format, args...) }
func (l pionLogger) Info(msg string)                   { l.emit(slog.LevelDebug, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.emitf(slog.LevelDebug, format, args...) }
func (l pionLogger) Warn(msg string)                   { l.emit(slog.LevelWarn, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.emitf(slog.LevelWarn, format, args...) }
func (l pionLogger) Error(msg string)                  { l.emit(slog.LevelError, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.emitf(slog.LevelError, format, args...) }
