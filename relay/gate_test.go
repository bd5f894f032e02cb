package relay

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

var (
	gateKey    = stun.NewLongTermIntegrity("alice", "ferry.test", "secret")
	gateClient = &net.UDPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 4000}
	gateLocal  = &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 3478}
)

type rawAttr struct {
	typ stun.AttrType
	val []byte
}

func (a rawAttr) AddTo(m *stun.Message) error {
	m.Add(a.typ, a.val)
	return nil
}

func lifetime(s uint32) stun.Setter {
	return rawAttr{stun.AttrLifetime, []byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}}
}

func peerAt(ip string, port int) stun.Setter {
	return rawSetter(func(m *stun.Message) error {
		return stun.XORMappedAddress{IP: net.ParseIP(ip), Port: port}.AddToAs(m, stun.AttrXORPeerAddress)
	})
}

type rawSetter func(m *stun.Message) error

func (f rawSetter) AddTo(m *stun.Message) error { return f(m) }

func channel(n uint16) stun.Setter {
	return rawAttr{stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0}}
}

// request builds an authenticated request of method.
func request(t testing.TB, method stun.Method, attrs ...stun.Setter) []byte {
	t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
	setters = append(setters, stun.NewUsername("alice"), stun.NewRealm("ferry.test"), stun.NewNonce("n"), gateKey, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func newGate(t testing.TB, o GateOptions) *RequestGate {
	t.Helper()
	if o.Key == nil {
		o.Key = func([]byte) []byte { return gateKey }
	}
	g, err := NewRequestGate(o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestParseGateRequest(t *testing.T) {
	tests := []struct {
		name   string
		raw    []byte
		ok     bool
		peers  []string
		life   bool
		chanNo uint16
	}{
		{"create permission, two peers", request(t, stun.MethodCreatePermission, peerAt("8.8.8.8", 1), peerAt("2001:db8::9", 2)), true,
			[]string{"8.8.8.8:1", "[2001:db8::9]:2"}, false, 0},
		{"channel bind", request(t, stun.MethodChannelBind, channel(0x4001), peerAt("1.1.1.1", 53)), true, []string{"1.1.1.1:53"}, false, 0x4001},
		{"refresh", request(t, stun.MethodRefresh, lifetime(600)), true, nil, true, 0},
		{"bad lifetime", request(t, stun.MethodRefresh, rawAttr{stun.AttrLifetime, []byte{1, 2}}), false, nil, false, 0},
		{"bad peer family", request(t, stun.MethodCreatePermission, rawAttr{stun.AttrXORPeerAddress, []byte{0, 3, 0, 0, 0, 0, 0, 0}}), false, nil, false, 0},
		{"response", stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassSuccessResponse)).Raw, false, nil, false, 0},
		{"short", []byte{0, 1, 0, 0}, false, nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := parseGateRequest(tt.raw)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if r.npeers != len(tt.peers) {
				t.Fatalf("%d peers, want %d", r.npeers, len(tt.peers))
			}
			for i, p := range tt.peers {
				if got := r.peer(tt.raw, i).String(); got != p {
					t.Errorf("peer %d = %s, want %s", i, got, p)
				}
			}
			if (r.lifetimeOff > 0) != tt.life || r.channel != tt.chanNo || r.integrityOff == 0 || r.fingerprintOff == 0 {
				t.Errorf("parsed %+v", r)
			}
		})
	}
}

// TestGateLifetime: a LIFETIME over the cap is lowered in place and the
// request re-signed; others are untouched.
func TestGateLifetime(t *testing.T) {
	g := newGate(t, GateOptions{MaxLifetime: 2 * time.Minute})
	tests := []struct {
		ask, want uint32
	}{{1800, 120}, {3599, 120}, {120, 120}, {60, 60}, {3600, 3600}, {0, 0}}
	for _, tt := range tests {
		for _, method := range []stun.Method{stun.MethodAllocate, stun.MethodRefresh} {
			raw := request(t, method, lifetime(tt.ask))
			orig := bytes.Clone(raw)
			if reply := g.Check(raw, gateClient, gateLocal); reply != nil {
				t.Fatal("Check answered a lifetime request")
			}
			m := &stun.Message{Raw: raw}
			if err := m.Decode(); err != nil {
				t.Fatal(err)
			}
			v, _ := m.Get(stun.AttrLifetime)
			if got := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3]); got != tt.want {
				t.Errorf("%v LIFETIME %d -> %d, want %d", method, tt.ask, got, tt.want)
			}
			if err := gateKey.Check(m); err != nil {
				t.Errorf("%v LIFETIME %d: integrity: %v", method, tt.ask, err)
			}
			if err := stun.Fingerprint.Check(m); err != nil {
				t.Errorf("%v LIFETIME %d: fingerprint: %v", method, tt.ask, err)
			}
			if tt.ask == tt.want && !bytes.Equal(raw, orig) {
				t.Errorf("%v LIFETIME %d: request changed", method, tt.ask)
			}
		}
	}
	// Without the key nothing is changed.
	g = newGate(t, GateOptions{MaxLifetime: 2 * time.Minute, Key: func([]byte) []byte { return nil }})
	raw := request(t, stun.MethodRefresh, lifetime(1800))
	orig := bytes.Clone(raw)
	g.Check(raw, gateClient, gateLocal)
	if !bytes.Equal(raw, orig) {
		t.Fatal("changed without a key")
	}
}

// TestGateQuotas follows an allocation through pion's events and checks
// the 508 answers.
func TestGateQuotas(t *testing.T) {
	g := newGate(t, GateOptions{Permissions: 2, Channels: 1})
	ev := g.Events()
	relayAddr := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 50000}
	check := func(name string, raw []byte, want508 bool) {
		t.Helper()
		reply := g.Check(raw, gateClient, gateLocal)
		if (reply != nil) != want508 {
			t.Fatalf("%s: answered %v, want 508 %v", name, reply != nil, want508)
		}
		if reply == nil {
			return
		}
		m := &stun.Message{Raw: reply}
		if err := m.Decode(); err != nil {
			t.Fatal(err)
		}
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil || ec.Code != 508 {
			t.Fatalf("%s: reply code %v (%v)", name, ec.Code, err)
		}
		if err := gateKey.Check(m); err != nil {
			t.Fatalf("%s: reply integrity: %v", name, err)
		}
	}
	// Unknown allocation: pion answers (437).
	check("no allocation", request(t, stun.MethodCreatePermission, peerAt("8.8.8.8", 1), peerAt("8.8.4.4", 1), peerAt("1.1.1.1", 1)), false)
	ev.OnAllocationCreated(gateClient, gateLocal, "UDP", "alice", "r", relayAddr, 0)
	perm := func(ip string, add bool) {
		f := ev.OnPermissionCreated
		if !add {
			f = ev.OnPermissionDeleted
		}
		f(gateClient, gateLocal, "UDP", "alice", "r", relayAddr, net.ParseIP(ip))
	}
	check("three at once", request(t, stun.MethodCreatePermission, peerAt("8.8.8.8", 1), peerAt("8.8.4.4", 1), peerAt("1.1.1.1", 1)), true)
	check("two, one twice", request(t, stun.MethodCreatePermission, peerAt("8.8.8.8", 1), peerAt("8.8.8.8", 2), peerAt("8.8.4.4", 1)), false)
	perm("8.8.8.8", true)
	perm("8.8.4.4", true)
	check("refresh", request(t, stun.MethodCreatePermission, peerAt("8.8.8.8", 9)), false)
	check("third", request(t, stun.MethodCreatePermission, peerAt("1.1.1.1", 1)), true)
	perm("8.8.4.4", false) // expired
	check("third after an expiry", request(t, stun.MethodCreatePermission, peerAt("1.1.1.1", 1)), false)
	check("channel", request(t, stun.MethodChannelBind, channel(0x4001), peerAt("8.8.8.8", 1)), false)
	ev.OnChannelCreated(gateClient, gateLocal, "UDP", "alice", "r", relayAddr, &net.UDPAddr{IP: net.ParseIP("8.8.8.8"), Port: 1}, 0x4001)
	check("channel refresh", request(t, stun.MethodChannelBind, channel(0x4001), peerAt("8.8.8.8", 1)), false)
	check("second channel", request(t, stun.MethodChannelBind, channel(0x4002), peerAt("8.8.8.8", 2)), true)
	ev.OnChannelDeleted(gateClient, gateLocal, "UDP", "alice", "r", relayAddr, &net.UDPAddr{IP: net.ParseIP("8.8.8.8"), Port: 1}, 0x4001)
	check("second channel after expiry", request(t, stun.MethodChannelBind, channel(0x4002), peerAt("8.8.8.8", 2)), false)
	if st := g.Stats(); st.RefusedPermissions != 2 || st.RefusedChannels != 1 {
		t.Errorf("stats %+v", st)
	}
	ev.OnAllocationDeleted(gateClient, gateLocal, "UDP", "alice", "r")
	g.mu.Lock()
	n := len(g.allocs)
	g.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d allocations left after the delete", n)
	}
}

// TestGateAllocatesNothingOnPass: Check on requests it lets through
// (within quota) allocates nothing.
func TestGateAllocatesNothingOnPass(t *testing.T) {
	g := newGate(t, GateOptions{Permissions: 10, Channels: 10, MaxLifetime: time.Hour})
	g.Events().OnAllocationCreated(gateClient, gateLocal, "UDP", "alice", "r", gateLocal, 0)
	reqs := [][]byte{
		request(t, stun.MethodCreatePermission, peerAt("8.8.8.8", 1), peerAt("2001:db8::1", 1)),
		request(t, stun.MethodChannelBind, channel(0x4001), peerAt("8.8.8.8", 1)),
		request(t, stun.MethodRefresh, lifetime(600)),
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, r := range reqs {
			if g.Check(r, gateClient, gateLocal) != nil {
				t.Fatal("refused")
			}
		}
	}); n != 0 {
		t.Fatalf("%v allocations per round", n)
	}
}

func TestNewRequestGateErrors(t *testing.T) {
	for _, o := range []GateOptions{{Permissions: -1}, {Channels: -1}, {MaxLifetime: time.Second}, {MaxLifetime: -time.Minute}} {
		if _, err := NewRequestGate(o); err == nil {
			t.Errorf("NewRequestGate(%+v) accepted", o)
		}
	}
}
