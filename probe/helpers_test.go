package probe

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/dataplane"
	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/listen"
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
	// relayPorts is relay.ports ("": 40000-49999); userAllocations is
	// quota.user-allocations (0: the default).
	relayPorts      string
	userAllocations int
	// drain makes the server drain from the start.
	drain bool
}

// startServer runs ferry on 127.0.0.1:0 (alternates on 127.0.0.2) and
// returns its UDP address.
func startServer(t *testing.T, o serverOpts) netip.AddrPort {
	t.Helper()
	cfg := config.Default()
	cfg.Realm = "ferry.test"
	cfg.Relay.Ports = "40000-49999"
	if o.relayPorts != "" {
		cfg.Relay.Ports = o.relayPorts
	}
	if o.userAllocations != 0 {
		cfg.Quota.UserAllocations = o.userAllocations
	}
	cfg.Relay.AllowLoopbackPeers = o.allowLoopback
	cfg.Relay.DeniedPeers = o.denied
	cfg.Auth.Users = []string{testUser + "=" + testPass}
	cfg.Auth.Secrets = []string{testSecret}
	cfg.Listen = []string{"udp://127.0.0.1:0"}
	ls, _ := cfg.Listeners()
	set, bound, err := listen.Open(t.Context(), ls, nil, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	primary := bound[0].Addr
	var nat []dataplane.NATSockets
	if o.alt {
		a2 := netip.MustParseAddr("127.0.0.2")
		n := dataplane.NATSockets{Primary: primary}
		if n.Alt[0], err = listen.UDPAt(netip.AddrPortFrom(a2, primary.Port())); err != nil {
			t.Fatal(err)
		}
		if n.Alt[1], err = listen.UDPAt(netip.AddrPortFrom(primary.Addr(), 0)); err != nil {
			t.Fatal(err)
		}
		if n.Alt[2], err = listen.UDPAt(netip.AddrPortFrom(a2, n.Alt[1].Addr.Port())); err != nil {
			t.Fatal(err)
		}
		nat = append(nat, n)
	}
	so, err := dataplane.OptionsFrom(cfg, netip.MustParseAddr("127.0.0.1"), netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if so.Credentials, err = auth.NewSnapshot(cfg.Realm, cfg.Auth.Users, cfg.Auth.Secrets); err != nil {
		t.Fatal(err)
	}
	so.Loops, so.Log = 1, testutil.LoggerAt(t, slog.LevelInfo)
	srv, err := dataplane.New(so, dataplane.SocketsFrom(set, nat))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if o.drain {
		srv.Drain()
	}
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
