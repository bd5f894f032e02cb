package edge

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestPacketConnBatchedRead reads ChannelData bursts from several clients
// through a real UDP socket (read with recvmmsg): every datagram arrives
// whole, each client's address is one immutable *net.UDPAddr (pion keeps
// it), and reading allocates nothing per packet.
func TestPacketConnBatchedRead(t *testing.T) {
	tests := []struct {
		name    string
		network string
		addr    string
		clients int
		burst   int
	}{
		{"ipv4", "udp4", "127.0.0.1", 3, 50},
		{"ipv6", "udp6", "::1", 2, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := net.ParseIP(tt.addr)
			sock, err := net.ListenUDP(tt.network, &net.UDPAddr{IP: ip})
			if err != nil {
				t.Skipf("%s loopback: %v", tt.network, err)
			}
			_ = sock.SetReadBuffer(1 << 20)
			pc := WrapPacketConn(sock, Options{Counters: &Counters{}})
			defer pc.Close()
			var clients []*net.UDPConn
			for range tt.clients {
				c, err := net.ListenUDP(tt.network, &net.UDPAddr{IP: ip})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				clients = append(clients, c)
			}
			send := func() {
				for i := range tt.burst {
					for j, c := range clients {
						payload := bytes.Repeat([]byte{byte(j)}, 200)
						payload[0] = byte(i)
						if _, err := c.WriteTo(batchChannelData(0x4000+uint16(j), payload), sock.LocalAddr()); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			buf := make([]byte, DefaultMTU)
			_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			send()
			addrs := map[string]net.Addr{}
			next := make([]int, tt.clients)
			for range tt.burst * tt.clients {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatal(err)
				}
				j := int(buf[1]) // channel number 0x40jj
				if j >= tt.clients || n != 204 || buf[4] != byte(next[j]) || buf[5] != byte(j) ||
					from.String() != clients[j].LocalAddr().String() {
					t.Fatalf("datagram %d bytes %x from %v, want client %d number %d", n, buf[:6], from, j, next[j])
				}
				next[j]++
				if prev, ok := addrs[from.String()]; ok && prev != from {
					t.Fatalf("a new address value for %v", from)
				}
				addrs[from.String()] = from
			}
			send()
			if got := testing.AllocsPerRun(tt.burst*tt.clients-1, func() {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					t.Fatal(err)
				}
			}); got != 0 {
				t.Fatalf("%.2f allocations per datagram", got)
			}
		})
	}
}

// batchChannelData frames payload as ChannelData on channel num.
func batchChannelData(num uint16, payload []byte) []byte {
	return append([]byte{byte(num >> 8), byte(num), byte(len(payload) >> 8), byte(len(payload))}, payload...)
}
