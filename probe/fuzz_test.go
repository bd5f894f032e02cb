package probe

import (
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

// FuzzParseDatagram feeds untrusted datagrams (what a server or anyone else
// may send the probe) to the classifier.
func FuzzParseDatagram(f *testing.F) {
	data, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodData, stun.ClassIndication),
		xorPeer(netip.MustParseAddrPort("192.0.2.1:5000")), stun.RawAttribute{Type: stun.AttrData, Value: []byte("hi")})
	ok, _ := stun.Build(stun.TransactionID, stun.BindingSuccess,
		&stun.XORMappedAddress{IP: []byte{192, 0, 2, 1}, Port: 1}, stun.Fingerprint)
	f.Add(data.Raw)
	f.Add(ok.Raw)
	f.Add([]byte{0x40, 0x00, 0x00, 0x02, 'h', 'i', 0, 0})
	f.Add([]byte{0x40, 0x00, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		peers := map[uint16]netip.AddrPort{0x4000: netip.MustParseAddrPort("192.0.2.1:5000")}
		d, ok := parseDatagram(b, peers)
		if !ok {
			return
		}
		if (d.msg == nil) == (d.data == nil) {
			t.Fatalf("classified as both or neither: %+v", d)
		}
		if d.data != nil && len(d.data.Payload) > len(b) {
			t.Fatal("payload longer than the datagram")
		}
		if d.msg != nil {
			var xa stun.XORMappedAddress
			_ = xa.GetFrom(d.msg)
			var ec stun.ErrorCodeAttribute
			_ = ec.GetFrom(d.msg)
			_ = errorOf(d.msg)
		}
	})
}
