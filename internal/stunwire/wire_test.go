package stunwire

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

func pionRequest(t testing.TB, setters ...stun.Setter) *stun.Message {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseAndIntegrityAgainstPion(t *testing.T) {
	key := LongTermKey("alice", "ferry.test", "pw")
	pionKey := stun.NewLongTermIntegrity("alice", "ferry.test", "pw")
	if !bytes.Equal(key[:], pionKey) {
		t.Fatalf("long-term key %x, pion %x", key, []byte(pionKey))
	}
	tests := []struct {
		name   string
		fp     bool
		mi     bool
		wantOK bool
	}{
		{"plain", false, false, false},
		{"integrity", false, true, true},
		{"integrity+fingerprint", true, true, true},
		{"fingerprint only", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := []stun.Setter{stun.NewType(stun.MethodAllocate, stun.ClassRequest),
				stun.NewUsername("alice"), stun.NewRealm("ferry.test"), stun.NewNonce("n")}
			if tt.mi {
				s = append(s, pionKey)
			}
			if tt.fp {
				s = append(s, stun.Fingerprint)
			}
			pm := pionRequest(t, s...)
			var m Message
			if err := Parse(pm.Raw, &m); err != nil {
				t.Fatal(err)
			}
			if m.HasFingerprint != tt.fp {
				t.Errorf("fingerprint %v, want %v", m.HasFingerprint, tt.fp)
			}
			mac := NewMAC()
			if got := mac.Check(&m, key[:]); got != tt.wantOK {
				t.Errorf("Check = %v, want %v", got, tt.wantOK)
			}
			wrong := LongTermKey("alice", "ferry.test", "other")
			if mac.Check(&m, wrong[:]) {
				t.Error("a wrong key verified")
			}
			if u, ok := m.Get(stun.AttrUsername); !ok || string(u) != "alice" {
				t.Errorf("USERNAME %q %v", u, ok)
			}
		})
	}
}

func TestBuilderVerifiesWithPion(t *testing.T) {
	key := LongTermKey("bob", "r", "secret")
	tid := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	var b Builder
	b.Start(nil, stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse), tid)
	relay := netip.MustParseAddrPort("[2001:db8::1]:50000")
	mapped := netip.MustParseAddrPort("192.0.2.7:4000")
	b.AddXOR(stun.AttrXORRelayedAddress, relay)
	b.AddXOR(stun.AttrXORMappedAddress, mapped)
	b.AddUint32(stun.AttrLifetime, 600)
	b.AddSoftware("ferry")
	b.AddErrorCode(486, "Allocation Quota Reached")
	mac := NewMAC()
	b.Integrity(mac, key[:])
	b.Fingerprint()
	raw := b.Finish()

	pm := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := pm.Decode(); err != nil {
		t.Fatal(err)
	}
	if err := stun.MessageIntegrity(key[:]).Check(pm); err != nil {
		t.Fatalf("pion rejects our MESSAGE-INTEGRITY: %v", err)
	}
	if err := stun.Fingerprint.Check(pm); err != nil {
		t.Fatalf("pion rejects our FINGERPRINT: %v", err)
	}
	var xr stun.XORMappedAddress
	if err := xr.GetFromAs(pm, stun.AttrXORRelayedAddress); err != nil || xr.String() != relay.String() {
		t.Fatalf("relayed %v %v", xr, err)
	}
	var m Message
	if err := Parse(raw, &m); err != nil {
		t.Fatal(err)
	}
	if got, _, ok := m.GetXORAddress(stun.AttrXORMappedAddress); !ok || got != mapped {
		t.Fatalf("mapped %v", got)
	}
	if got, _, ok := m.GetXORAddress(stun.AttrXORRelayedAddress); !ok || got != relay {
		t.Fatalf("relayed %v", got)
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(pm); err != nil || ec.Code != 486 {
		t.Fatalf("error code %v %v", ec, err)
	}
}

func TestParseRejects(t *testing.T) {
	good := pionRequest(t, stun.BindingRequest, stun.Fingerprint).Raw
	badFP := bytes.Clone(good)
	badFP[len(badFP)-1] ^= 1
	longer := append(bytes.Clone(good), 0, 0, 0, 0)
	cookie := bytes.Clone(good)
	cookie[5] ^= 1
	afterFP := pionRequest(t, stun.BindingRequest, stun.Fingerprint, stun.NewSoftware("x")).Raw
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:10], ErrShort},
		{"cookie", cookie, ErrNotSTUN},
		{"top bits", append([]byte{0x40}, good[1:]...), ErrNotSTUN},
		{"trailing bytes", longer, ErrLength},
		{"fingerprint value", badFP, ErrFingerprint},
		{"attribute after fingerprint", afterFP, ErrFingerprint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			if err := Parse(tt.b, &m); err != tt.want {
				t.Fatalf("Parse = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestUnprotectedAttributesIgnored(t *testing.T) {
	key := LongTermKey("u", "r", "p")
	pm := pionRequest(t, stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.NewUsername("u"),
		stun.MessageIntegrity(key[:]))
	// An attacker appends LIFETIME after MESSAGE-INTEGRITY.
	pm.Add(stun.AttrLifetime, []byte{0, 0, 0, 0})
	pm.WriteLength()
	var m Message
	if err := Parse(pm.Raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Has(stun.AttrLifetime) {
		t.Fatal("LIFETIME after MESSAGE-INTEGRITY was read")
	}
	if !NewMAC().Check(&m, key[:]) {
		t.Fatal("integrity of the covered part does not verify")
	}
}

func TestUnknownComprehensionRequired(t *testing.T) {
	pm := pionRequest(t, stun.BindingRequest, stun.RawAttribute{Type: 0x0031, Value: []byte{1, 2, 3, 4}},
		stun.RawAttribute{Type: 0x8031, Value: []byte{1}}, stun.RawAttribute{Type: stun.AttrUserhash, Value: make([]byte, 32)})
	var m Message
	if err := Parse(pm.Raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.NUnknown != 2 || m.Unknown[0] != 0x0031 || m.Unknown[1] != uint16(stun.AttrUserhash) {
		t.Fatalf("unknown %v", m.Unknown[:m.NUnknown])
	}
}

func TestChannelDataAndFraming(t *testing.T) {
	b := []byte{0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0}
	ch, data, ok := ChannelData(b)
	if !ok || ch != 0x4001 || string(data) != "abc" {
		t.Fatalf("%x %q %v", ch, data, ok)
	}
	if _, _, ok := ChannelData([]byte{0x7F, 0xFF, 0, 0}); ok {
		t.Fatal("channel 0x7FFF accepted")
	}
	if _, _, ok := ChannelData([]byte{0x40, 0, 0, 9, 1}); ok {
		t.Fatal("length past the end accepted")
	}
	if n, need, ok := StreamFrameLen(b); n != 8 || need || !ok {
		t.Fatalf("frame %d %v %v", n, need, ok)
	}
	if _, _, ok := StreamFrameLen([]byte{0x80, 0, 0, 0}); ok {
		t.Fatal("garbage framed")
	}
}

func TestNoAllocations(t *testing.T) {
	key := LongTermKey("u", "r", "p")
	raw := pionRequest(t, stun.NewType(stun.MethodRefresh, stun.ClassRequest), stun.NewUsername("u"),
		stun.NewRealm("r"), stun.NewNonce("abc"), stun.MessageIntegrity(key[:]), stun.Fingerprint).Raw
	var m Message
	mac := NewMAC()
	var b Builder
	buf := make([]byte, 0, 512)
	peer := netip.MustParseAddrPort("198.51.100.1:9")
	allocs := testing.AllocsPerRun(100, func() {
		if err := Parse(raw, &m); err != nil || !mac.Check(&m, key[:]) {
			t.Fatal("parse/check")
		}
		b.Start(buf[:0], stun.NewType(stun.MethodRefresh, stun.ClassSuccessResponse), m.TransactionID)
		b.AddUint32(stun.AttrLifetime, 600)
		b.AddXOR(stun.AttrXORPeerAddress, peer)
		b.Integrity(mac, key[:])
		b.Fingerprint()
		_ = b.Finish()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per parse+check+build", allocs)
	}
}
