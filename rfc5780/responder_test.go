package rfc5780

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func TestResponderWithAlternates(t *testing.T) {
	l := newLab(t, true, "ferry")
	tests := []struct {
		name   string
		to     int  // role the request is sent to
		flags  byte // CHANGE-REQUEST flags; 0xFF: no attribute
		from   int  // role the answer must come from
		change bool // counted as changed
	}{
		{name: "primary plain", to: rolePrimary, flags: 0xFF, from: rolePrimary},
		{name: "primary change none", to: rolePrimary, flags: 0, from: rolePrimary},
		{name: "primary change ip", to: rolePrimary, flags: flagChangeIP, from: roleIP, change: true},
		{name: "primary change port", to: rolePrimary, flags: flagChangePort, from: rolePort, change: true},
		{name: "primary change both", to: rolePrimary, flags: flagChangeIP | flagChangePort, from: roleBoth, change: true},
		{name: "alt ip plain", to: roleIP, flags: 0xFF, from: roleIP},
		{name: "alt port plain", to: rolePort, flags: 0xFF, from: rolePort},
		{name: "alt both plain", to: roleBoth, flags: 0xFF, from: roleBoth},
		{name: "alt both change both", to: roleBoth, flags: flagChangeIP | flagChangePort, from: rolePrimary, change: true},
		{name: "alt ip change ip", to: roleIP, flags: flagChangeIP, from: rolePrimary, change: true},
		{name: "alt port change ip", to: rolePort, flags: flagChangeIP, from: roleBoth, change: true},
	}
	client := listenUDP(t, "127.0.0.1:0")
	me := localAP(t, client)
	var wantAnswered, wantAlt, wantChanged uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req []byte
			if tt.flags == 0xFF {
				req = bindingRequest(t)
			} else {
				req = bindingRequest(t, changeRequest(tt.flags))
			}
			resp, from := exchange(t, client, l.addrs[tt.to], req, 2*time.Second)
			if resp == nil {
				t.Fatal("no answer")
			}
			d := decode(t, resp)
			if d.msg.Type != stun.BindingSuccess || string(d.msg.TransactionID[:]) != string(req[8:20]) {
				t.Fatalf("type %v", d.msg.Type)
			}
			if from != l.addrs[tt.from] {
				t.Errorf("answered from %s, want %s", from, l.addrs[tt.from])
			}
			if d.origin != l.addrs[tt.from] {
				t.Errorf("RESPONSE-ORIGIN %s, want %s", d.origin, l.addrs[tt.from])
			}
			if d.other != l.addrs[tt.to^roleBoth] {
				t.Errorf("OTHER-ADDRESS %s, want %s", d.other, l.addrs[tt.to^roleBoth])
			}
			if d.xorMapped != me || d.mapped != me {
				t.Errorf("mapped %s/%s, want %s", d.xorMapped, d.mapped, me)
			}
			if d.software != "ferry" || !d.fingerprintOK {
				t.Errorf("software %q fingerprint %v", d.software, d.fingerprintOK)
			}
		})
		wantAnswered++
		if tt.to != rolePrimary {
			wantAlt++
		}
		if tt.change {
			wantChanged++
		}
	}
	got := l.counter.Snapshot()
	want := CounterValues{Answered: wantAnswered, Alternate: wantAlt, Changed: wantChanged}
	if got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
	select {
	case b := <-l.pion.got:
		t.Errorf("pion got %x", b)
	default:
	}
}

func TestResponderWithoutAlternates(t *testing.T) {
	l := newLab(t, false, "")
	client := listenUDP(t, "127.0.0.1:0")
	tests := []struct {
		name    string
		req     []byte
		code    int
		unknown []stun.AttrType
	}{
		{name: "plain", req: bindingRequest(t)},
		{name: "change request", req: bindingRequest(t, changeRequest(flagChangeIP)), code: 420, unknown: []stun.AttrType{stun.AttrChangeRequest}},
		{name: "change request no flags", req: bindingRequest(t, changeRequest(0)), code: 420, unknown: []stun.AttrType{stun.AttrChangeRequest}},
		{name: "response port", req: bindingRequest(t, stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{1, 2, 0, 0}}), code: 420, unknown: []stun.AttrType{stun.AttrResponsePort}},
		{name: "response port and change", req: bindingRequest(t, changeRequest(2), stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{1, 2, 0, 0}}), code: 420, unknown: []stun.AttrType{stun.AttrResponsePort, stun.AttrChangeRequest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, from := exchange(t, client, l.addrs[rolePrimary], tt.req, 2*time.Second)
			if resp == nil {
				t.Fatal("no answer")
			}
			if from != l.addrs[rolePrimary] {
				t.Errorf("answered from %s", from)
			}
			d := decode(t, resp)
			if d.code != tt.code {
				t.Fatalf("code %d, want %d", d.code, tt.code)
			}
			if tt.code != 0 {
				if d.msg.Type != stun.BindingError || len(d.unknown) != len(tt.unknown) {
					t.Fatalf("type %v unknown %v, want %v", d.msg.Type, d.unknown, tt.unknown)
				}
				for i := range tt.unknown {
					if d.unknown[i] != tt.unknown[i] {
						t.Errorf("unknown %v, want %v", d.unknown, tt.unknown)
					}
				}
				return
			}
			if d.hasOther {
				t.Error("OTHER-ADDRESS without alternates")
			}
			if d.origin != l.addrs[rolePrimary] || d.xorMapped != localAP(t, client) {
				t.Errorf("origin %s mapped %s", d.origin, d.xorMapped)
			}
			if d.software != "" {
				t.Errorf("software %q without Options.Software", d.software)
			}
		})
	}
	if got := l.counter.Snapshot(); got.Answered != 1 || got.Rejected != 4 {
		t.Errorf("counters %+v", got)
	}
}

func TestPassThrough(t *testing.T) {
	l := newLab(t, true, "ferry")
	client := listenUDP(t, "127.0.0.1:0")
	alloc, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.Fingerprint)
	ind, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.Fingerprint)
	malformed := bindingRequest(t)
	malformed[len(malformed)-1] ^= 1
	for _, b := range [][]byte{
		alloc.Raw,
		ind.Raw,
		{0x40, 0x00, 0x00, 0x03, 'a', 'b', 'c', 0},
		[]byte("not stun at all"),
	} {
		if _, err := client.WriteTo(b, net.UDPAddrFromAddrPort(l.addrs[rolePrimary])); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-l.pion.got:
			if !bytes.Equal(got, b) {
				t.Errorf("pion got %x, want %x", got, b)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%x did not reach pion", b)
		}
	}
	// A Binding request with a bad FINGERPRINT is neither answered nor passed.
	if resp, _ := exchange(t, client, l.addrs[rolePrimary], malformed, 200*time.Millisecond); resp != nil {
		t.Error("malformed request answered")
	}
	// Non-Binding datagrams on an alternate socket are dropped.
	if resp, _ := exchange(t, client, l.addrs[roleBoth], alloc.Raw, 200*time.Millisecond); resp != nil {
		t.Error("alternate answered an Allocate")
	}
	select {
	case b := <-l.pion.got:
		t.Errorf("pion got %x", b)
	default:
	}
	if got := l.counter.Snapshot(); got.Dropped != 2 || got.Answered != 0 {
		t.Errorf("counters %+v", got)
	}
}

// chanConn returns queued datagrams from ReadFrom.
type chanConn struct {
	net.PacketConn
	b    []byte
	from net.Addr
}

func (c *chanConn) ReadFrom(p []byte) (int, net.Addr, error) { return copy(p, c.b), c.from, nil }

func TestPassThroughAllocationFree(t *testing.T) {
	r, err := New(Options{Software: "ferry"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inner := &chanConn{
		PacketConn: listenUDP(t, "127.0.0.1:0"),
		b:          []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4},
		from:       &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9},
	}
	pc := r.Wrap(inner)
	buf := make([]byte, 1600)
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = pc.ReadFrom(buf) }); n != 0 {
		t.Errorf("ChannelData pass-through allocates %v times", n)
	}
	alloc, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	inner.b = alloc.Raw
	if n := testing.AllocsPerRun(1000, func() { _, _, _ = pc.ReadFrom(buf) }); n != 0 {
		t.Errorf("STUN pass-through allocates %v times", n)
	}
}

func TestNewRejectsBadAlternates(t *testing.T) {
	a1 := func() net.PacketConn { return listenUDP(t, "127.0.0.1:0") }
	tests := []struct {
		name string
		alt  func() Alternates
	}{
		{name: "incomplete", alt: func() Alternates { return Alternates{IP: a1()} }},
		{name: "same IP", alt: func() Alternates { return Alternates{IP: a1(), Port: a1(), Both: a1()} }},
		{name: "wildcard", alt: func() Alternates {
			return Alternates{IP: listenUDP(t, "0.0.0.0:0"), Port: a1(), Both: a1()}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alt := tt.alt()
			if _, err := New(Options{Alternates: alt}); err == nil {
				t.Fatal("New accepted bad alternates")
			}
			// New closed them.
			if alt.IP != nil {
				if _, err := alt.IP.WriteTo([]byte{0}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
					t.Error("alternate socket still open after New failed")
				}
			}
		})
	}
}

func TestListenAlternates(t *testing.T) {
	primary := localAP(t, listenUDP(t, "127.0.0.1:0"))
	alt2 := netip.MustParseAddr("127.0.0.2")
	tests := []struct {
		name    string
		primary netip.AddrPort
		altIP   netip.Addr
		altPort uint16
		ok      bool
	}{
		{name: "any port", primary: primary, altIP: alt2, ok: true},
		{name: "same ip", primary: primary, altIP: primary.Addr()},
		{name: "same port", primary: primary, altIP: alt2, altPort: primary.Port()},
		{name: "family", primary: primary, altIP: netip.MustParseAddr("::1")},
		{name: "wildcard primary", primary: netip.AddrPortFrom(netip.IPv4Unspecified(), 3478), altIP: alt2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ListenAlternates(t.Context(), tt.primary, tt.altIP, tt.altPort)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err != nil {
				return
			}
			defer a.Close()
			ip, port, both := localAP(t, a.IP), localAP(t, a.Port), localAP(t, a.Both)
			if ip != netip.AddrPortFrom(alt2, primary.Port()) || port.Addr() != primary.Addr() ||
				both != netip.AddrPortFrom(alt2, port.Port()) {
				t.Errorf("alternates %s %s %s", ip, port, both)
			}
		})
	}
}
