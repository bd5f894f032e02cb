package rfc5780

import (
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

// FuzzParseRequest feeds untrusted datagrams to the Binding request parser
// and checks that whatever it accepts yields a response pion can decode.
func FuzzParseRequest(f *testing.F) {
	f.Add(bindingRequest(f))
	f.Add(bindingRequest(f, changeRequest(0x06)))
	f.Add(bindingRequest(f, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{1}}))
	f.Add(bindingRequest(f, stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{1, 2, 0, 0}}))
	f.Add(bindingRequest(f, stun.NewSoftware("client"), stun.NewUsername("u")))
	f.Add([]byte{0x40, 0, 0, 4, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := parseRequest(b)
		if err != nil {
			return
		}
		if !isBindingRequest(b) {
			t.Fatal("accepted a non-Binding datagram")
		}
		sw := encodeSoftware("ferry")
		var out []byte
		if req.hasChange || req.nUnknown > 0 {
			req.addUnknown(attrChangeRequest)
			out = appendError(nil, &req.tid, 420, "Unknown Attribute", req.unknown[:req.nUnknown], sw)
		} else {
			out = appendSuccess(nil, &req.tid, success{
				mapped: netip.MustParseAddrPort("[2001:db8::1]:1"),
				origin: netip.MustParseAddrPort("192.0.2.1:3478"),
				other:  netip.MustParseAddrPort("192.0.2.2:3479"),
			}, sw)
		}
		m := &stun.Message{Raw: out}
		if err := m.Decode(); err != nil {
			t.Fatalf("response does not decode: %v", err)
		}
		if err := stun.Fingerprint.Check(m); err != nil {
			t.Fatalf("response FINGERPRINT: %v", err)
		}
		if m.TransactionID != req.tid {
			t.Fatal("transaction ID changed")
		}
	})
}
