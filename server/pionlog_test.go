package server

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/pion/logging"
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
