package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// TestRelayReadsBatched reads bursts from peers through the whole relay
// socket chain (batched reader, port guard, quota, tracker): datagrams
// arrive whole and in order, each peer's address is one immutable value,
// and the per-packet path allocates nothing.
func TestRelayReadsBatched(t *testing.T) {
	tests := []struct {
		name    string
		tracker bool
		quota   bool
		peers   int
		burst   int
	}{
		{"bare", false, false, 1, 40},
		{"tracked", true, false, 2, 40},
		{"tracked with quota", true, true, 3, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := PortAllocatorConfig{Bind4: netip.MustParseAddr("127.0.0.1")}
			if tt.tracker {
				c.Tracker = NewTracker(TrackerOptions{})
			}
			if tt.quota {
				q, err := NewQuota(QuotaOptions{})
				if err != nil {
					t.Fatal(err)
				}
				c.Quota = q
			}
			a, err := NewPortAllocator(c)
			if err != nil {
				t.Fatal(err)
			}
			pc, relayAddr, err := a.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "alice"})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), relayAddr.(*net.UDPAddr).AddrPort().Port()))
			var peers []*net.UDPConn
			for range tt.peers {
				p, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				peers = append(peers, p)
			}
			send := func() {
				for i := range tt.burst {
					for j, p := range peers {
						msg := bytes.Repeat([]byte{byte(j)}, 200)
						msg[0] = byte(i)
						if _, err := p.WriteTo(msg, dst); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			buf := make([]byte, 1600)
			_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			send()
			addrs := map[string]net.Addr{}
			next := make([]int, tt.peers)
			for range tt.burst * tt.peers {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatal(err)
				}
				j := -1
				for k, p := range peers {
					if p.LocalAddr().String() == from.String() {
						j = k
					}
				}
				if j < 0 || n != 200 || buf[0] != byte(next[j]) || buf[1] != byte(j) {
					t.Fatalf("datagram %d bytes %x from %v, want peer %d number %d", n, buf[:2], from, j, next[j])
				}
				next[j]++
				if prev, ok := addrs[from.String()]; ok && prev != from {
					t.Fatalf("a new address value for %v", from)
				}
				addrs[from.String()] = from
			}
			send()
			if got := testing.AllocsPerRun(tt.burst*tt.peers-1, func() {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					t.Fatal(err)
				}
			}); got != 0 {
				t.Fatalf("%.2f allocations per datagram", got)
			}
		})
	}
}
