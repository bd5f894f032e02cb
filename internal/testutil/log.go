package testutil

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/pion/logging"
)

// LogWriter is an io.Writer that passes each write to t.Log, without its
// trailing newline, until the test ends, and keeps a copy of what it
// passed. Writes after the test ended are dropped: pion's goroutines log
// after tests end, and t.Log then is a race (or a panic).
type LogWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
	kept bytes.Buffer
}

// NewLogWriter returns a LogWriter for t that stops at t's cleanup.
func NewLogWriter(t testing.TB) *LogWriter {
	w := &LogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *LogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
		w.kept.Write(p)
	}
	return len(p), nil
}

// String returns everything written before the test ended.
func (w *LogWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kept.String()
}

// Logger returns a debug-level text logger writing to t.Log until the test
// ends.
func Logger(t testing.TB) *slog.Logger {
	return LoggerAt(t, slog.LevelDebug)
}

// LoggerAt is Logger at level.
func LoggerAt(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(NewLogWriter(t), &slog.HandlerOptions{Level: level}))
}

// CaptureLogger is Logger that also returns its writer, which keeps the
// output for assertions.
func CaptureLogger(t testing.TB) (*slog.Logger, *LogWriter) {
	w := NewLogWriter(t)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w
}

// LockedBuffer is a bytes.Buffer safe for a writer and a polling reader.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// PionLogger returns a pion logger factory writing warnings and errors to
// t.Log until the test ends.
func PionLogger(t testing.TB) logging.LoggerFactory {
	return &logging.DefaultLoggerFactory{Writer: NewLogWriter(t), DefaultLogLevel: logging.LogLevelWarn}
}

// Reset empties the buffer.
func (b *LockedBuffer) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Reset()
}
