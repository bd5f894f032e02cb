package edge

import (
	"bytes"
	"fmt"
	"net"
	"testing"

	"github.com/pion/stun/v3"
)

// rewrite runs the write-path fix-up as the wrappers do.
func rewrite(b []byte, software []byte) ([]byte, plan, bool) {
	o := outCtx{software: software}
	p, act := planRewrite(b, o)
	if act != sendRewritten {
		return b, p, false
	}
	return appendRewritten(nil, b, p, o), p, true
}

// checkWellFormed verifies out is one STUN message whose FINGERPRINT, if
// any, is last and valid.
func checkWellFormed(out []byte) (*stun.Message, error) {
	m := &stun.Message{Raw: bytes.Clone(out)}
	if err := m.Decode(); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if int(m.Length)+stunHeaderSize != len(out) {
		return nil, fmt.Errorf("length field %d, message %d bytes", m.Length, len(out))
	}
	for i, a := range m.Attributes {
		if a.Type == stun.AttrFingerprint {
			if i != len(m.Attributes)-1 {
				return nil, fmt.Errorf("FINGERPRINT is not last")
			}
			if err := stun.Fingerprint.Check(m); err != nil {
				return nil, fmt.Errorf("FINGERPRINT: %w", err)
			}
		}
	}
	return m, nil
}

func TestRewriteResponse(t *testing.T) {
	sw := encodeSoftware("ferry/test")
	key := stun.NewLongTermIntegrity("u", "r", "p")
	tests := []struct {
		name     string
		in       []byte
		software []byte
		changed  bool
		code     stun.ErrorCode // expected ERROR-CODE after, 0 for none
		withSW   bool           // SOFTWARE expected after
	}{
		{"binding success gets SOFTWARE", msgBindingSuccess(t), sw, true, 0, true},
		{"binding success without option", msgBindingSuccess(t), nil, false, 0, false},
		{"binding success already has SOFTWARE",
			build(t, stun.BindingSuccess, stun.NewSoftware("other"), stun.Fingerprint), sw, false, 0, true},
		{"channel bind denied becomes 403", msgChannelBindDenied(t), nil, true, stun.CodeForbidden, false},
		{"channel bind denied becomes 403 with SOFTWARE", msgChannelBindDenied(t), sw, true, stun.CodeForbidden, true},
		{"channel bind denied with FINGERPRINT",
			build(t, typeOf(stun.MethodChannelBind, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.Fingerprint), sw, true, stun.CodeForbidden, true},
		{"channel bind auth challenge stays 401",
			build(t, typeOf(stun.MethodChannelBind, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.NewNonce("n"), stun.NewRealm("r")),
			nil, false, stun.CodeUnauthorized, false},
		{"auth challenge gets SOFTWARE only",
			build(t, typeOf(stun.MethodChannelBind, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.NewNonce("n"), stun.NewRealm("r")),
			sw, true, stun.CodeUnauthorized, true},
		{"channel bind 400 stays 400",
			build(t, typeOf(stun.MethodChannelBind, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeBadRequest}), nil, false, stun.CodeBadRequest, false},
		{"allocate 401 without nonce is not ChannelBind",
			build(t, typeOf(stun.MethodAllocate, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}), nil, false, stun.CodeUnauthorized, false},
		{"error with integrity untouched",
			build(t, typeOf(stun.MethodCreatePermission, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeForbidden}, key), sw, false, stun.CodeForbidden, false},
		{"channel bind 401 with integrity untouched",
			build(t, typeOf(stun.MethodChannelBind, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, key), sw, false, stun.CodeUnauthorized, false},
		{"success with integrity untouched",
			build(t, typeOf(stun.MethodAllocate, stun.ClassSuccessResponse), key, stun.Fingerprint), sw, false, 0, false},
		{"refresh success without integrity not a SOFTWARE target",
			build(t, typeOf(stun.MethodRefresh, stun.ClassSuccessResponse)), sw, false, 0, false},
		{"error 400 gets SOFTWARE",
			build(t, typeOf(stun.MethodAllocate, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: stun.CodeBadRequest}), sw, true, stun.CodeBadRequest, true},
		{"request untouched", msgBindingRequest(t), sw, false, 0, false},
		{"data indication untouched", msgSendIndication(t), sw, false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.in)
			out, _, changed := rewrite(in, tt.software)
			if !bytes.Equal(in, tt.in) {
				t.Fatal("input modified")
			}
			if changed != tt.changed {
				t.Fatalf("changed = %v, want %v", changed, tt.changed)
			}
			if !changed && !bytes.Equal(out, tt.in) {
				t.Fatal("unchanged message differs from input")
			}
			m, err := checkWellFormed(out)
			if err != nil {
				t.Fatal(err)
			}
			var ec stun.ErrorCodeAttribute
			if err := ec.GetFrom(m); (err == nil) != (tt.code != 0) || ec.Code != tt.code {
				t.Fatalf("ERROR-CODE = %v (%v), want %v", ec.Code, err, tt.code)
			}
			if tt.code == stun.CodeForbidden && changed && string(ec.Reason) != "Forbidden" {
				t.Fatalf("reason = %q", ec.Reason)
			}
			var got stun.Software
			hasSW := got.GetFrom(m) == nil
			if hasSW != tt.withSW {
				t.Fatalf("SOFTWARE present = %v, want %v", hasSW, tt.withSW)
			}
			if changed && tt.withSW && got.String() != "ferry/test" {
				t.Fatalf("SOFTWARE = %q", got)
			}
			if m.TransactionID != decode(t, tt.in).TransactionID || m.Type != decode(t, tt.in).Type {
				t.Fatal("type or transaction ID changed")
			}
			// A second pass has nothing left to do.
			if _, _, again := rewrite(out, tt.software); again {
				t.Fatal("rewrite is not idempotent")
			}
		})
	}
}

func TestRewriteKeepsOtherAttributes(t *testing.T) {
	in := build(t, typeOf(stun.MethodChannelBind, stun.ClassErrorResponse),
		stun.NewRealm("before"), &stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized},
		xorPeer(net.IPv4(127, 0, 0, 9), 7), stun.Fingerprint)
	out, _, changed := rewrite(in, encodeSoftware("s"))
	if !changed {
		t.Fatal("not rewritten")
	}
	m, err := checkWellFormed(out)
	if err != nil {
		t.Fatal(err)
	}
	var types []stun.AttrType
	for _, a := range m.Attributes {
		types = append(types, a.Type)
	}
	want := []stun.AttrType{stun.AttrRealm, stun.AttrErrorCode, stun.AttrXORPeerAddress, stun.AttrSoftware, stun.AttrFingerprint}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("attributes %v, want %v", types, want)
	}
	var realm stun.Realm
	if err := realm.GetFrom(m); err != nil || realm.String() != "before" {
		t.Fatalf("REALM = %q, %v", realm, err)
	}
}

func TestRewriteMalformedUntouched(t *testing.T) {
	good := msgBindingSuccess(t)
	afterFP := append(bytes.Clone(good), 0x80, 0x22, 0, 0) // attribute after FINGERPRINT
	afterFP[3] += 4
	tests := map[string][]byte{
		"truncated":         good[:len(good)-1],
		"bad cookie":        append(append(bytes.Clone(good[:4]), 0, 0, 0, 0), good[8:]...),
		"after FINGERPRINT": afterFP,
		"short":             good[:10],
		"channel data":      channelData(0x4000, []byte("abc"), true),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, act := planRewrite(in, outCtx{software: encodeSoftware("s"), limit: 20}); act != sendAsIs {
				t.Fatal("planned a rewrite of a malformed message")
			}
		})
	}
}

func TestSoftwareTruncated(t *testing.T) {
	long := bytes.Repeat([]byte("é"), 500) // 1000 bytes
	cfg := newConfig(Options{Software: string(long)})
	l := be16(cfg.software[2:4])
	if l > maxSoftware || l < maxSoftware-1 {
		t.Fatalf("SOFTWARE length %d", l)
	}
	out, _, _ := rewrite(msgBindingSuccess(t), cfg.software)
	m, err := checkWellFormed(out)
	if err != nil {
		t.Fatal(err)
	}
	var sw stun.Software
	if err := sw.GetFrom(m); err != nil {
		t.Fatalf("SOFTWARE rejected by pion/stun: %v", err)
	}
}
