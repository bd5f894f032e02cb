package dataplane

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/listen"
)

// startRFC5780 runs a server on 127.0.0.1 with two SO_REUSEPORT UDP sockets
// and, when alt, alternates on 127.0.0.2. It returns the primary and, with
// alternates, A2:P1, A1:P2, A2:P2.
func startRFC5780(t *testing.T, alt bool) (*Server, [4]netip.AddrPort) {
	t.Helper()
	cfg := config.Default()
	cfg.Realm = testRealm
	cfg.Relay.Ports = "40000-49999"
	cfg.Auth.Users = []string{testUser + "=" + testPass}
	cfg.Listen = []string{"udp://127.0.0.1:0"}
	ls, _ := cfg.Listeners()
	set, bound, err := listen.Open(t.Context(), ls, nil, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var addrs [4]netip.AddrPort
	addrs[0] = bound[0].Addr
	var nat []NATSockets
	if alt {
		a2 := netip.MustParseAddr("127.0.0.2")
		n := NATSockets{Primary: addrs[0]}
		for i, ap := range []netip.AddrPort{netip.AddrPortFrom(a2, addrs[0].Port()), netip.AddrPortFrom(addrs[0].Addr(), 0)} {
			if n.Alt[i], err = listen.UDPAt(ap); err != nil {
				t.Fatal(err)
			}
		}
		if n.Alt[2], err = listen.UDPAt(netip.AddrPortFrom(a2, n.Alt[1].Addr.Port())); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			addrs[i+1] = n.Alt[i].Addr
		}
		nat = []NATSockets{n}
	}
	o, err := OptionsFrom(cfg, netip.MustParseAddr("127.0.0.1"), netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Credentials, err = auth.NewSnapshot(cfg.Realm, cfg.Auth.Users, nil); err != nil {
		t.Fatal(err)
	}
	o.Loops, o.Log = 2, testutil.Logger(t)
	srv, err := New(o, SocketsFrom(set, nat))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv, addrs
}

func TestRFC5780ThroughServer(t *testing.T) {
	srv, addrs := startRFC5780(t, true)
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	tests := []struct {
		name     string
		to       int
		flags    byte
		wantFrom int
	}{
		{"plain", 0, 0, 0},
		{"change ip", 0, 4, 1},
		{"change port", 0, 2, 2},
		{"change both", 0, 6, 3},
		{"on alternate, change both", 3, 6, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
				stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, tt.flags}}, stun.Fingerprint)
			if _, err := client.WriteTo(req.Raw, net.UDPAddrFromAddrPort(addrs[tt.to])); err != nil {
				t.Fatal(err)
			}
			_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 1500)
			n, from, err := client.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if got := from.(*net.UDPAddr).AddrPort(); got != addrs[tt.wantFrom] {
				t.Errorf("answer from %s, want %s", got, addrs[tt.wantFrom])
			}
			res := &stun.Message{Raw: buf[:n]}
			if err := res.Decode(); err != nil {
				t.Fatal(err)
			}
			var other stun.OtherAddress
			if err := other.GetFrom(res); err != nil || other.Port != int(addrs[tt.to^3].Port()) {
				t.Errorf("OTHER-ADDRESS %v (%v), want %s", other, err, addrs[tt.to^3])
			}
			var origin stun.ResponseOrigin
			if err := origin.GetFrom(res); err != nil || origin.String() != addrs[tt.wantFrom].String() {
				t.Errorf("RESPONSE-ORIGIN %v (%v), want %s", origin, err, addrs[tt.wantFrom])
			}
			if err := stun.Fingerprint.Check(res); err != nil {
				t.Error(err)
			}
		})
	}
	if got := srv.Stats().Bindings; got != uint64(len(tests)) {
		t.Errorf("counted %d Binding requests, want %d", got, len(tests))
	}
}

func TestRFC5780WithoutAlternates(t *testing.T) {
	_, addrs := startRFC5780(t, false)
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
		stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}}, stun.Fingerprint)
	res := roundTrip(t, client, net.UDPAddrFromAddrPort(addrs[0]), req)
	var code stun.ErrorCodeAttribute
	var unknown stun.UnknownAttributes
	if err := code.GetFrom(res); err != nil || code.Code != stun.CodeUnknownAttribute {
		t.Fatalf("error code %v (%v), want 420", code, err)
	}
	if err := unknown.GetFrom(res); err != nil || len(unknown) != 1 || unknown[0] != stun.AttrChangeRequest {
		t.Errorf("UNKNOWN-ATTRIBUTES %v (%v)", unknown, err)
	}
}
