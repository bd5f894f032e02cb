package udpbatch

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

func TestConnWriteTo(t *testing.T) {
	tests := []struct {
		name            string
		network, local  string // the wrapped socket
		rnetwork, raddr string // the receiver
		dst             func(r *net.UDPConn) net.Addr
	}{
		{"ipv4", "udp4", "127.0.0.1", "udp4", "127.0.0.1", func(r *net.UDPConn) net.Addr { return r.LocalAddr() }},
		{"ipv6", "udp6", "::1", "udp6", "::1", func(r *net.UDPConn) net.Addr { return r.LocalAddr() }},
		{"dual-stack socket to ipv4", "udp", "::", "udp4", "127.0.0.1", func(r *net.UDPConn) net.Addr { return r.LocalAddr() }},
		{"ipv4 given as 16 bytes", "udp4", "127.0.0.1", "udp4", "127.0.0.1", func(r *net.UDPConn) net.Addr {
			a := r.LocalAddr().(*net.UDPAddr)
			return &net.UDPAddr{IP: a.IP.To16(), Port: a.Port}
		}},
		{"not a *net.UDPAddr", "udp4", "127.0.0.1", "udp4", "127.0.0.1", func(r *net.UDPConn) net.Addr {
			return addrOnly{r.LocalAddr().String()}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Wrap(listen(t, tt.network, tt.local), Options{})
			r := listen(t, tt.rnetwork, tt.raddr)
			msg := datagram(1, 2, 300)
			n, err := c.WriteTo(msg, tt.dst(r))
			if _, isAddr := tt.dst(r).(addrOnly); isAddr {
				if err == nil {
					t.Fatal("WriteTo with a non-UDP address succeeded; the standard path refuses it")
				}
				return
			}
			if err != nil || n != len(msg) {
				t.Fatalf("WriteTo = %d, %v; want %d, nil", n, err, len(msg))
			}
			_ = r.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 1000)
			m, from, err := r.ReadFromUDP(buf)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:m], msg) {
				t.Fatalf("received %d bytes that differ from the %d sent", m, len(msg))
			}
			if from.Port != c.LocalAddr().(*net.UDPAddr).Port {
				t.Fatalf("datagram came from %v, want port of %v", from, c.LocalAddr())
			}
		})
	}
}

// addrOnly is a net.Addr that is not a *net.UDPAddr.
type addrOnly struct{ s string }

func (addrOnly) Network() string  { return "udp" }
func (a addrOnly) String() string { return a.s }

func TestConnWriteToErrors(t *testing.T) {
	r := listen(t, "udp4", "127.0.0.1")
	t.Run("ipv6 destination from an ipv4 socket", func(t *testing.T) {
		c := Wrap(listen(t, "udp4", "127.0.0.1"), Options{})
		if _, err := c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv6loopback, Port: 9}); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("deadline passed", func(t *testing.T) {
		c := Wrap(listen(t, "udp4", "127.0.0.1"), Options{})
		_ = c.SetWriteDeadline(time.Now().Add(-time.Second))
		_, err := c.WriteTo([]byte("x"), r.LocalAddr())
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v; want a timeout", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		pool := NewPool(4, 2048) // shared send state: a failed send leaves no trace in it
		u := listen(t, "udp4", "127.0.0.1")
		c := Wrap(u, Options{Pool: pool})
		if n, err := c.WriteTo(make([]byte, 100), r.LocalAddr()); err != nil || n != 100 {
			t.Fatalf("WriteTo before closing = %d, %v", n, err)
		}
		_ = c.Close()
		n, err := c.WriteTo([]byte("x"), r.LocalAddr())
		if !errors.Is(err, net.ErrClosed) || n != 0 {
			t.Fatalf("WriteTo after closing = %d, %v; want 0, net.ErrClosed", n, err)
		}
	})
	t.Run("kernel error named", func(t *testing.T) {
		c := Wrap(listen(t, "udp4", "127.0.0.1"), Options{})
		// Larger than any UDP datagram: EMSGSIZE from sendto.
		_, err := c.WriteTo(make([]byte, 70000), r.LocalAddr())
		var se *os.SyscallError
		if !errors.As(err, &se) || se.Syscall != "sendto" {
			t.Fatalf("err = %v; want a sendto SyscallError", err)
		}
	})
}

// TestWriteToDoesNotAllocate is the zero-allocation guarantee for sends.
func TestWriteToDoesNotAllocate(t *testing.T) {
	for _, tt := range []struct {
		network string
		o       Options
	}{
		{"udp4", Options{}},
		{"udp6", Options{}},
		{"udp4", Options{Pool: NewPool(4, 2048)}},
	} {
		network := tt.network
		t.Run(fmt.Sprintf("%s pooled=%v", network, tt.o.Pool != nil), func(t *testing.T) {
			addr := "127.0.0.1"
			if network == "udp6" {
				addr = "::1"
			}
			c := Wrap(listen(t, network, addr), tt.o)
			r := listen(t, network, addr)
			_ = r.SetReadBuffer(1 << 20)
			dst := r.LocalAddr()
			msg := datagram(0, 0, 200)
			_, _ = c.WriteTo(msg, dst) // pool warm-up
			if a := testing.AllocsPerRun(200, func() {
				if _, err := c.WriteTo(msg, dst); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Fatalf("%.2f allocations per datagram", a)
			}
		})
	}
}

func BenchmarkWriteTo(b *testing.B) {
	for _, tt := range []struct {
		name string
		raw  bool
	}{{"raw sendto", true}, {"net.UDPConn", false}} {
		b.Run(tt.name, func(b *testing.B) {
			u := listen(b, "udp4", "127.0.0.1")
			var c net.PacketConn = u
			if tt.raw {
				c = Wrap(u, Options{})
			}
			r := listen(b, "udp4", "127.0.0.1")
			_ = r.SetReadBuffer(4 << 20)
			go func() { // drain so the receive queue never fills
				buf := make([]byte, 2048)
				for {
					if _, _, err := r.ReadFrom(buf); err != nil {
						return
					}
				}
			}()
			dst := r.LocalAddr()
			msg := datagram(0, 0, 200)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.WriteTo(msg, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
