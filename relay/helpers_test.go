package relay

import (
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// testWriter forwards log output to t.Log until the test ends; goroutines
// still logging after that are silently dropped instead of panicking.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// hasIPv6Loopback reports whether ::1 can be bound.
func hasIPv6Loopback() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// freeRange finds n consecutive ports on bind that are free for both UDP
// and TCP right now, below the usual ephemeral range so the kernel is
// unlikely to hand them to someone else during the test. It never uses a
// fixed port: the base is random and checked.
func freeRange(t testing.TB, bind netip.Addr, n int) (lo, hi uint16) {
	t.Helper()
	udp, tcp := "udp4", "tcp4"
	if bind.Is6() {
		udp, tcp = "udp6", "tcp6"
	}
	for attempt := 0; attempt < 200; attempt++ {
		base := uint16(20000 + rand.IntN(12000-n))
		var closers []func() error
		ok := true
		for i := 0; i < n && ok; i++ {
			ap := netip.AddrPortFrom(bind, base+uint16(i))
			u, err := net.ListenUDP(udp, net.UDPAddrFromAddrPort(ap))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, u.Close)
			l, err := net.ListenTCP(tcp, net.TCPAddrFromAddrPort(ap))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, l.Close)
		}
		for _, c := range closers {
			_ = c()
		}
		if ok {
			return base, base + uint16(n) - 1
		}
	}
	t.Fatalf("no %d free consecutive ports on %s", n, bind)
	return 0, 0
}

// checkGoroutines fails t if the goroutine count does not drop back to
// before within a few seconds.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := runtime.NumGoroutine()
		if now <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines leaked: %d before, %d after\n%s", before, now, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
