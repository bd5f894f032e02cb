package dataplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/listen"
)

const (
	testRealm  = "ferry.test"
	testUser   = "alice"
	testPass   = "wonderland"
	testSecret = "rest-secret-1"
)

// fixture is a running server on loopback sockets.
type fixture struct {
	srv   *Server
	cfg   config.Config
	udp   net.Addr
	tcp   net.Addr
	tls   net.Addr
	dtls  net.Addr
	certs *x509.CertPool
	store *listen.Certs

	certFile, keyFile string
}

type fixtureOpts struct {
	family        string // "4" or "6"
	allowLoopback bool
	withTLS       bool
	withDTLS      bool
	loops         int
	secrets       []string
	externalIP    string
	configure     func(*config.Config) // adjusts the config before Validate
	tune          func(*Options)       // adjusts the server options
	log           *slog.Logger         // the server's logger; nil logs to t
}

func startServer(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	if o.family == "" {
		o.family = "4"
	}
	host := "127.0.0.1"
	if o.family == "6" {
		host = "[::1]"
		if !testutil.HasIPv6Loopback() {
			t.Skip("no IPv6 loopback on this host")
		}
	}
	if o.loops == 0 {
		o.loops = 2
	}
	cfg := config.Default()
	cfg.Realm = testRealm
	cfg.Relay.AllowLoopbackPeers = o.allowLoopback
	cfg.Relay.Ports = "40000-49999"
	cfg.Auth.Users = []string{testUser + "=" + testPass}
	cfg.Auth.Secrets = []string{testSecret}
	if o.secrets != nil {
		cfg.Auth.Secrets = o.secrets
	}
	if o.externalIP != "" {
		cfg.Relay.ExternalIP = []string{o.externalIP}
	}
	cfg.Listen = []string{"udp://" + host + ":0", "tcp://" + host + ":0"}
	f := &fixture{}
	var certs *listen.Certs
	if o.withTLS || o.withDTLS {
		cert := testutil.SelfSigned(t)
		f.certs = cert.Pool
		var err error
		if certs, err = listen.LoadCerts(cert.CertFile, cert.KeyFile); err != nil {
			t.Fatal(err)
		}
		f.store = certs
		f.certFile, f.keyFile = cert.CertFile, cert.KeyFile
		cfg.TLS.Cert, cfg.TLS.Key = cert.CertFile, cert.KeyFile
		if o.withTLS {
			cfg.Listen = append(cfg.Listen, "tls://"+host+":0")
		}
		if o.withDTLS {
			cfg.Listen = append(cfg.Listen, "dtls://"+host+":0")
		}
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	ls, _ := cfg.Listeners()
	set, bound, err := listen.Open(context.Background(), ls, certs, o.loops, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bound {
		a := b.Addr
		switch b.Transport {
		case config.UDP:
			f.udp = net.UDPAddrFromAddrPort(a)
		case config.TCP:
			f.tcp = net.TCPAddrFromAddrPort(a)
		case config.TLSt:
			f.tls = net.TCPAddrFromAddrPort(a)
		case config.DTLS:
			f.dtls = net.UDPAddrFromAddrPort(a)
		}
	}
	relay4, relay6 := netip.MustParseAddr("127.0.0.1"), netip.Addr{}
	if testutil.HasIPv6Loopback() {
		relay6 = netip.IPv6Loopback()
	}
	opts, err := OptionsFrom(cfg, relay4, relay6, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := auth.NewSnapshot(cfg.Realm, cfg.Auth.Users, cfg.Auth.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	opts.Credentials = snap
	opts.Loops = o.loops
	opts.Log = testutil.Logger(t)
	if o.log != nil {
		opts.Log = o.log
	}
	if o.tune != nil {
		o.tune(&opts)
	}
	f.srv, err = New(opts, SocketsFrom(set, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.srv.Close() })
	return f
}

// clientConn opens the client side of a transport to the fixture.
func (f *fixture) clientConn(t *testing.T, transport string) (net.PacketConn, net.Addr) {
	t.Helper()
	switch transport {
	case "udp":
		network, local := "udp4", "127.0.0.1:0"
		if strings.HasPrefix(f.udp.String(), "[") {
			network, local = "udp6", "[::1]:0"
		}
		c, err := net.ListenPacket(network, local)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c, f.udp
	case "tcp":
		c, err := net.Dial("tcp", f.tcp.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return turn.NewSTUNConn(c), f.tcp
	case "tls":
		c, err := tls.Dial("tcp", f.tls.String(), &tls.Config{RootCAs: f.certs, ServerName: "ferry.test", MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return turn.NewSTUNConn(c), f.tls
	case "dtls":
		network := "udp4"
		if strings.HasPrefix(f.dtls.String(), "[") {
			network = "udp6"
		}
		c, err := dtls.DialWithOptions(network, f.dtls.(*net.UDPAddr),
			dtls.WithRootCAs(f.certs), dtls.WithServerName("ferry.test"),
			dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return turn.NewSTUNConn(c), f.dtls
	}
	t.Fatalf("unknown transport %s", transport)
	return nil, nil
}

func (f *fixture) client(t *testing.T, transport, user, pass string) *turn.Client {
	t.Helper()
	conn, addr := f.clientConn(t, transport)
	return listeningClient(t, conn, addr.String(), user, pass)
}

// listeningClient is a pion TURN client of the server at addr over conn,
// listening, closed with the test.
func listeningClient(t *testing.T, conn net.PacketConn, addr, user, pass string) *turn.Client {
	t.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr,
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		RTO:            200 * time.Millisecond,
		LoggerFactory:  testutil.PionLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// relayRoundTrips sends n packets through the relay to an echo peer and
// expects each back. pion's client uses a Send indication first and a
// ChannelBind after, so both paths are covered.
func relayRoundTrips(t *testing.T, relayConn net.PacketConn, peer net.Addr, n int) {
	t.Helper()
	buf := make([]byte, 1600)
	for i := 0; i < n; i++ {
		msg := []byte("ferry-relay-" + string(rune('a'+i%26)))
		got := false
		for attempt := 0; attempt < 5 && !got; attempt++ {
			if _, err := relayConn.WriteTo(msg, peer); err != nil {
				t.Fatalf("write to peer: %v", err)
			}
			_ = relayConn.SetReadDeadline(time.Now().Add(time.Second))
			for {
				m, from, err := relayConn.ReadFrom(buf)
				if err != nil {
					break
				}
				if from.String() == peer.String() && string(buf[:m]) == string(msg) {
					got = true
					break
				}
			}
		}
		if !got {
			t.Fatalf("packet %d not echoed through the relay", i)
		}
	}
}
