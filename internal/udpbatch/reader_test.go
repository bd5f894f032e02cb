package udpbatch

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// listen opens a loopback UDP socket of network on port 0, or skips when
// the family is unavailable.
func listen(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(addr)})
	if err != nil {
		t.Skipf("%s loopback: %v", network, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// datagram is what sender s sends as its i-th datagram.
func datagram(s, i, size int) []byte {
	b := bytes.Repeat([]byte{byte(s)}, size)
	b[0] = byte(i)
	return b
}

func TestConnReadsBatches(t *testing.T) {
	tests := []struct {
		name    string
		network string
		addr    string
		o       Options
		senders int
		count   int // per sender
		size    int
	}{
		{"ipv4 default", "udp4", "127.0.0.1", Options{}, 3, 40, 200},
		{"ipv6", "udp6", "::1", Options{}, 2, 40, 200},
		{"batch of one", "udp4", "127.0.0.1", Options{Batch: 1}, 2, 10, 100},
		{"pooled", "udp4", "127.0.0.1", Options{Pool: NewPool(4, 2048)}, 2, 20, 100},
		{"tiny address cache", "udp4", "127.0.0.1", Options{Addrs: 1}, 3, 10, 50},
		{"truncated to size", "udp4", "127.0.0.1", Options{Size: 64}, 1, 5, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := listen(t, tt.network, tt.addr)
			_ = rc.SetReadBuffer(1 << 20)
			c := Wrap(rc, tt.o)
			var senders []*net.UDPConn
			for range tt.senders {
				senders = append(senders, listen(t, tt.network, tt.addr))
			}
			for i := range tt.count {
				for s, sc := range senders {
					if _, err := sc.WriteTo(datagram(s, i, tt.size), rc.LocalAddr()); err != nil {
						t.Fatal(err)
					}
				}
			}
			seen := make([]int, tt.senders) // next i expected per sender
			same := map[string]net.Addr{}
			buf := make([]byte, 1600)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for range tt.count * tt.senders {
				n, addr, err := c.ReadFrom(buf)
				if err != nil {
					t.Fatal(err)
				}
				s := -1
				for j, sc := range senders {
					if sc.LocalAddr().String() == addr.String() {
						s = j
					}
				}
				if s < 0 {
					t.Fatalf("datagram from unknown %v", addr)
				}
				want := datagram(s, seen[s], tt.size)
				if tt.o.Size > 0 && tt.o.Size < len(want) {
					want = want[:tt.o.Size]
				}
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("sender %d datagram %d: got %d bytes %x..., want %d", s, seen[s], n, buf[:min(n, 4)], len(want))
				}
				seen[s]++
				if tt.o.Addrs == 0 {
					if prev, ok := same[addr.String()]; ok && prev != addr {
						t.Fatalf("a new *net.UDPAddr for %v", addr)
					}
					same[addr.String()] = addr
				}
			}
		})
	}
}

func TestConnDeadlineAndClose(t *testing.T) {
	tests := []struct {
		name string
		stop func(*Conn)
		want func(error) bool
	}{
		{"deadline", func(c *Conn) { _ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)) },
			func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) && err.(net.Error).Timeout() }},
		{"close", func(c *Conn) { time.AfterFunc(20*time.Millisecond, func() { _ = c.Close() }) },
			func(err error) bool { return errors.Is(err, net.ErrClosed) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Wrap(listen(t, "udp4", "127.0.0.1"), Options{})
			tt.stop(c)
			_, _, err := c.ReadFrom(make([]byte, 100))
			if !tt.want(err) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

// TestReadFromDoesNotAllocate is the zero-allocation guarantee: reading
// datagrams from known sources allocates nothing.
func TestReadFromDoesNotAllocate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
	}{
		{"eager", Options{}},
		{"pooled", Options{Pool: NewPool(8, 2048)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := listen(t, "udp4", "127.0.0.1")
			_ = rc.SetReadBuffer(1 << 20)
			c := Wrap(rc, tt.o)
			s := listen(t, "udp4", "127.0.0.1")
			const runs = 200
			for i := range runs + 2 {
				if _, err := s.WriteTo(datagram(0, i, 200), rc.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 1600)
			_, _, _ = c.ReadFrom(buf) // first address
			if a := testing.AllocsPerRun(runs, func() {
				if _, _, err := c.ReadFrom(buf); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Fatalf("%.2f allocations per datagram", a)
			}
		})
	}
}

func BenchmarkReadFrom(b *testing.B) {
	rc := listen(b, "udp4", "127.0.0.1")
	_ = rc.SetReadBuffer(4 << 20)
	c := Wrap(rc, Options{})
	s, err := net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, 1600)
	pkt := datagram(0, 0, 200)
	b.ReportAllocs()
	for b.Loop() {
		// A burst of 32 then drain: what recvmmsg is for.
		for range 32 {
			_, _ = s.Write(pkt)
		}
		for range 32 {
			if _, _, err := c.ReadFrom(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
}
