package probe

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/listen"
	"github.com/ferryrtc/ferry/rfc5780"
	"github.com/ferryrtc/ferry/server"
)

const (
	testUser   = "alice"
	testPass   = "wonderland"
	testSecret = "rest-secret"
)

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimSuffix(p, []byte("\n"))))
	}
	return len(p), nil
}

func testLog(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type serverOpts struct {
	alt           bool
	allowLoopback bool
	denied        []string // relay.denied-peers
}

// startServer runs ferry on 127.0.0.1:0 (alternates on 127.0.0.2) and
// returns its UDP address.
func startServer(t *testing.T, o serverOpts) netip.AddrPort {
	t.Helper()
	cfg := config.Default()
	cfg.Realm = "ferry.test"
	cfg.Relay.Ports = "40000-49999"
	cfg.Relay.AllowLoopbackPeers = o.allowLoopback
	cfg.Relay.DeniedPeers = o.denied
	cfg.Auth.Users = []string{testUser + "=" + testPass}
	cfg.Auth.Secrets = []string{testSecret}
	cfg.Listen = []string{"udp://127.0.0.1:0"}
	ls, _ := cfg.Listeners()
	pcs, err := listen.UDP(t.Context(), ls[0], 1)
	if err != nil {
		t.Fatal(err)
	}
	primary := addrOf(pcs[0].LocalAddr())
	so := server.Options{Config: cfg, RelayV4: netip.MustParseAddr("127.0.0.1"), Log: testLog(t)}
	if o.alt {
		a, err := rfc5780.ListenAlternates(t.Context(), primary, netip.MustParseAddr("127.0.0.2"), 0)
		if err != nil {
			t.Fatal(err)
		}
		so.Alternates = map[netip.AddrPort]rfc5780.Alternates{primary: a}
	}
	snap, err := auth.NewSnapshot(cfg.Realm, cfg.Auth.Users, cfg.Auth.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	so.Auth = auth.New(snap, testLog(t), time.Now)
	srv, err := server.New(so, server.Sockets{Packet: pcs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return primary
}

// echoPeer echoes every datagram on a loopback socket until the test ends.
func echoPeer(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1600)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	return addrOf(pc.LocalAddr())
}

func target(scheme string, ap netip.AddrPort) Target {
	return Target{Scheme: scheme, Host: ap.Addr().String(), Port: ap.Port()}
}

// echoPeerSilent is a bound UDP socket that reads and never answers.
func echoPeerSilent(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return addrOf(pc.LocalAddr())
}
