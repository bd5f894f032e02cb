package rfc5780

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/pion/stun/v3"
)

func TestParseRequest(t *testing.T) {
	plain := bindingRequest(t)
	badFP := slices.Clone(plain)
	badFP[len(badFP)-1] ^= 0xFF
	truncated := slices.Clone(plain[:len(plain)-4])
	alloc, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	shortChange := bindingRequest(t, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{6}})
	overrun := bindingRequest(t)
	binary.BigEndian.PutUint16(overrun[22:24], 400) // FINGERPRINT claims 400 bytes

	tests := []struct {
		name       string
		in         []byte
		err        error
		change     uint8
		hasChange  bool
		badChange  bool
		unknown    []uint16
		wantTIDsrc []byte
	}{
		{name: "plain", in: plain},
		{name: "no fingerprint", in: func() []byte { m, _ := stun.Build(stun.TransactionID, stun.BindingRequest); return m.Raw }()},
		{name: "change ip+port", in: bindingRequest(t, changeRequest(0x06)), change: 0x06, hasChange: true},
		{name: "change port", in: bindingRequest(t, changeRequest(0x02)), change: 0x02, hasChange: true},
		{name: "change none", in: bindingRequest(t, changeRequest(0x00)), hasChange: true},
		{name: "change other bits ignored", in: bindingRequest(t, changeRequest(0xF9)), hasChange: true},
		{name: "change wrong length", in: shortChange, hasChange: true, badChange: true},
		{name: "response port", in: bindingRequest(t, stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{0x12, 0x34, 0, 0}}), unknown: []uint16{attrResponsePort}},
		{name: "software ignored", in: bindingRequest(t, stun.NewSoftware("x"))},
		{name: "bad fingerprint", in: badFP, err: errFingerprint},
		{name: "truncated", in: truncated, err: errMalformed},
		{name: "attribute overrun", in: overrun, err: errMalformed},
		{name: "allocate", in: alloc.Raw, err: errNotBinding},
		{name: "short", in: plain[:19], err: errNotBinding},
		{name: "channel data", in: []byte{0x40, 0, 0, 4, 1, 2, 3, 4}, err: errNotBinding},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseRequest(tt.in)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if r.change != tt.change || r.hasChange != tt.hasChange || r.badChange != tt.badChange {
				t.Errorf("got change %#x has %v bad %v, want %#x %v %v", r.change, r.hasChange, r.badChange, tt.change, tt.hasChange, tt.badChange)
			}
			if got := r.unknown[:r.nUnknown]; !slices.Equal(got, tt.unknown) {
				t.Errorf("unknown = %v, want %v", got, tt.unknown)
			}
			if string(r.tid[:]) != string(tt.in[8:20]) {
				t.Error("transaction ID not copied")
			}
		})
	}
}

func TestAppendSuccess(t *testing.T) {
	tid := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	tests := []struct {
		name     string
		s        success
		software string
	}{
		{name: "v4 full", software: "ferry", s: success{
			mapped: netip.MustParseAddrPort("198.51.100.7:40000"),
			origin: netip.MustParseAddrPort("203.0.113.1:3478"),
			other:  netip.MustParseAddrPort("203.0.113.2:3479"),
		}},
		{name: "v6 no other", s: success{
			mapped: netip.MustParseAddrPort("[2001:db8::7]:40000"),
			origin: netip.MustParseAddrPort("[2001:db8::1]:3478"),
		}},
		{name: "v4 unspecified origin omitted", s: success{
			mapped: netip.MustParseAddrPort("127.0.0.1:5"),
			origin: netip.MustParseAddrPort("0.0.0.0:3478"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := appendSuccess([]byte("prefix"), &tid, tt.s, encodeSoftware(tt.software))
			if string(out[:6]) != "prefix" {
				t.Fatal("prefix overwritten")
			}
			d := decode(t, out[6:])
			if d.msg.Type != stun.BindingSuccess || d.msg.TransactionID != tid {
				t.Fatalf("type %v tid %x", d.msg.Type, d.msg.TransactionID)
			}
			if !d.fingerprintOK {
				t.Error("bad FINGERPRINT")
			}
			if d.xorMapped != tt.s.mapped || d.mapped != tt.s.mapped {
				t.Errorf("mapped %s / %s, want %s", d.xorMapped, d.mapped, tt.s.mapped)
			}
			wantOrigin := tt.s.origin.IsValid() && !tt.s.origin.Addr().IsUnspecified()
			if d.hasOrigin != wantOrigin || (wantOrigin && d.origin != tt.s.origin) {
				t.Errorf("origin %v %s, want %v %s", d.hasOrigin, d.origin, wantOrigin, tt.s.origin)
			}
			if d.hasOther != tt.s.other.IsValid() || d.other != tt.s.other && tt.s.other.IsValid() {
				t.Errorf("other %v %s, want %s", d.hasOther, d.other, tt.s.other)
			}
			if d.software != tt.software {
				t.Errorf("software %q, want %q", d.software, tt.software)
			}
		})
	}
}

func TestAppendError(t *testing.T) {
	tid := [12]byte{9}
	tests := []struct {
		code    int
		reason  string
		unknown []uint16
	}{
		{420, "Unknown Attribute", []uint16{attrChangeRequest}},
		{420, "Unknown Attribute", []uint16{attrChangeRequest, attrResponsePort}},
		{400, "Bad Request", nil},
	}
	for _, tt := range tests {
		out := appendError(nil, &tid, tt.code, tt.reason, tt.unknown, encodeSoftware("ferry"))
		d := decode(t, out)
		if d.msg.Type != stun.BindingError || d.code != tt.code || !d.fingerprintOK || d.software != "ferry" {
			t.Errorf("%d: got type %v code %d fp %v sw %q", tt.code, d.msg.Type, d.code, d.fingerprintOK, d.software)
		}
		var want []stun.AttrType
		for _, u := range tt.unknown {
			want = append(want, stun.AttrType(u))
		}
		if !slices.Equal(d.unknown, want) {
			t.Errorf("%d: unknown %v, want %v", tt.code, d.unknown, want)
		}
	}
}

func TestEncodeSoftwareTruncates(t *testing.T) {
	long := string(make([]byte, 2000))
	b := encodeSoftware(long)
	if l := binary.BigEndian.Uint16(b[2:4]); l != maxSoftware {
		t.Errorf("length %d, want %d", l, maxSoftware)
	}
	// A multi-byte character is not split.
	s := string(make([]byte, maxSoftware-1)) + "é"
	if l := binary.BigEndian.Uint16(encodeSoftware(s)[2:4]); l != maxSoftware-1 {
		t.Errorf("length %d, want %d", l, maxSoftware-1)
	}
}
