package server

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// pionPerPacket are the debug lines pion logs for every ChannelData
// datagram (server.HandleRequest, handleDataPacket, handleChannelData) and
// every relayed peer datagram (allocation.packetConnHandler).
func pionPerPacket(l logging.LeveledLogger, args []any) {
	l.Debugf("Received %d bytes of udp from %s on %s", args...)
	l.Debugf("Received DataPacket from %s", args[1:2]...)
	l.Debugf("Received ChannelData from %s", args[1:2]...)
	l.Debugf("Relay socket %s received %d bytes from %s", args[3:6]...)
}

// TestPionLoggerPerPacketAllocs: at every level ferry runs with (debug is
// the most verbose), the adapter drops pion's per-packet lines without
// formatting them, so a packet costs only what pion itself allocates (the
// variadic slice at its call sites, built here once).
func TestPionLoggerPerPacketAllocs(t *testing.T) {
	client := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
	args := []any{204, client, server, server, 200, client}
	tests := []struct {
		name  string
		level slog.Level
	}{
		{"error", slog.LevelError},
		{"info", slog.LevelInfo},
		{"debug", slog.LevelDebug},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: tt.level}))
			l := pionLoggerFactory{log: log}.NewLogger("turn")
			if got := testing.AllocsPerRun(1000, func() { pionPerPacket(l, args) }); got != 0 {
				t.Fatalf("%.2f allocations per packet's log lines", got)
			}
		})
	}
}

func BenchmarkPionLoggerPerPacket(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	l := pionLoggerFactory{log: log}.NewLogger("turn")
	client := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}
	args := []any{204, client, server, server, 200, client}
	b.ReportAllocs()
	for b.Loop() {
		pionPerPacket(l, args)
	}
}

// TestRequestFailedLogBounded: failed requests are logged at debug with
// pion's reason, at most the burst at once; the next line written says how
// many were left out, and the next handler sees every one.
func TestRequestFailedLogBounded(t *testing.T) {
	for _, tt := range []struct {
		name      string
		level     slog.Level
		wantLines int
	}{
		{"debug", slog.LevelDebug, failedLogBurst},
		{"info", slog.LevelInfo, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level}))
			var forwarded int
			h := events(log, turn.EventHandler{OnAllocationError: func(_, _ net.Addr, _, _ string) { forwarded++ }})
			src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000}
			const flood = 4 * failedLogBurst
			for range flood {
				h.OnAllocationError(src, src, "UDP", "no allocation found")
			}
			if forwarded != flood {
				t.Fatalf("next handler saw %d of %d", forwarded, flood)
			}
			lines := strings.Count(buf.String(), "request failed")
			// A token may come back while the loop runs.
			if lines < tt.wantLines || lines > tt.wantLines+2 {
				t.Fatalf("%d lines for %d failures, want %d:\n%s", lines, flood, tt.wantLines, buf.String())
			}
			if tt.wantLines == 0 {
				return
			}
			if !strings.Contains(buf.String(), `error="no allocation found"`) {
				t.Fatalf("the reason is not logged:\n%s", buf.String())
			}
			time.Sleep(2 * time.Second / failedLogRate) // two tokens back
			buf.Reset()
			h.OnAllocationError(src, src, "UDP", "no allocation found")
			m := regexp.MustCompile(`not_logged_before=(\d+)`).FindStringSubmatch(buf.String())
			if m == nil {
				t.Fatalf("no line after the refill:\n%s", buf.String())
			}
			if n, _ := strconv.Atoi(m[1]); n < flood-lines-2 || n > flood-lines {
				t.Fatalf("not_logged_before=%d, want about %d", n, flood-lines)
			}
		})
	}
}

// TestPionLoggerLevels: pion's trace and debug lines appear only when the
// logger takes LevelTrace, its info lines at debug, warn and error as is.
func TestPionLoggerLevels(t *testing.T) {
	tests := []struct {
		level slog.Level
		want  []string // of "t", "d", "i", "w", "e"
	}{
		{LevelTrace, []string{"t", "d", "i", "w", "e"}},
		{slog.LevelDebug, []string{"i", "w", "e"}},
		{slog.LevelInfo, []string{"w", "e"}},
		{slog.LevelError, []string{"e"}},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level}))
			l := pionLoggerFactory{log: log}.NewLogger("turn")
			l.Tracef("%s", "t")
			l.Debug("d")
			l.Infof("%s", "i")
			l.Warn("w")
			l.Errorf("%s", "e")
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				if m := regexp.MustCompile(`msg=(\w)`).FindStringSubmatch(line); m != nil {
					got = append(got, m[1])
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("logged %v, want %v:\n%s", got, tt.want, buf.String())
			}
		})
	}
}
