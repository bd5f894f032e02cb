package probe

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/listen"
	"github.com/ferryrtc/ferry/rfc5780"
	"github.com/ferryrtc/ferry/server"
)

const (
	testUser   = "alice"
	testPass   = "wonderland"
	testSecret = "rest-secret"
)

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
	so := server.Options{Config: cfg, RelayV4: netip.MustParseAddr("127.0.0.1"), Log: testutil.LoggerAt(t, slog.LevelInfo)}
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
	so.Auth = auth.New(snap, testutil.LoggerAt(t, slog.LevelInfo), time.Now)
	srv, err := server.New(so, server.Sockets{Packet: pcs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return primary
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
