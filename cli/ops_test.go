package cli

import (
	"net"
	"net/netip"
	"testing"

	"github.com/ferryrtc/ferry/config"
)

func TestClientTransport(t *testing.T) {
	var bound []config.Listener
	for _, s := range []string{"udp://0.0.0.0:3478", "tcp://0.0.0.0:3478", "tls://0.0.0.0:5349", "dtls://0.0.0.0:5349", "udp://127.0.0.1:4000"} {
		l, err := config.ParseListener(s)
		if err != nil {
			t.Fatal(err)
		}
		bound = append(bound, l)
	}
	classify := clientTransport(bound)
	udp := func(s string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tests := []struct {
		local net.Addr
		want  string
	}{
		{udp("0.0.0.0:3478"), "udp"},  // a wildcard UDP socket reports itself
		{tcp("10.0.0.5:3478"), "tcp"}, // accepted on a wildcard listener
		{tcp("[::ffff:10.0.0.5]:5349"), "tls"},
		{udp("10.0.0.5:5349"), "dtls"},
		{udp("127.0.0.1:4000"), "udp"},
		{tcp("10.0.0.5:9999"), "tcp"}, // unknown: by address type
		{udp("10.0.0.5:9999"), "udp"},
	}
	for _, tt := range tests {
		if got := classify(tt.local); got != tt.want {
			t.Errorf("%T %s: %s, want %s", tt.local, tt.local, got, tt.want)
		}
	}
}
