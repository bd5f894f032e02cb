package stunwire

import (
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

// FuzzParse feeds untrusted bytes to Parse and the readers built on it:
// nothing may panic, and a message Parse accepts must re-verify with the
// key that signs it.
func FuzzParse(f *testing.F) {
	key := LongTermKey("u", "r", "p")
	for _, s := range [][]stun.Setter{
		{stun.TransactionID, stun.BindingRequest},
		{stun.TransactionID, stun.BindingRequest, stun.Fingerprint},
		{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), stun.NewUsername("u"),
			stun.NewRealm("r"), stun.NewNonce("n"), stun.MessageIntegrity(key[:]), stun.Fingerprint},
	} {
		m, err := stun.Build(s...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Raw)
	}
	f.Add([]byte{0x40, 0x00, 0x00, 0x01, 0xff, 0, 0, 0})
	mac := NewMAC()
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		_, _, _ = ChannelData(b)
		_, _, _ = StreamFrameLen(b)
		if Parse(b, &m) != nil {
			return
		}
		if m.Protected > len(m.Attributes) {
			t.Fatalf("protected %d of %d", m.Protected, len(m.Attributes))
		}
		_ = mac.Check(&m, key[:])
		m.EachXORAddress(stun.AttrXORPeerAddress, func(netip.AddrPort, bool) bool { return true })
	})
}
