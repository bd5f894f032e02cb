package engine

import (
	"testing"

	"github.com/pion/stun/v3"
)

// FuzzClientInput feeds untrusted bytes to the engine as a client packet
// (from a client with an allocation and from one without, over UDP and
// TCP) and as a peer datagram: nothing may panic, and nothing may reach a
// peer that was not permitted.
func FuzzClientInput(f *testing.F) {
	key := stun.NewLongTermIntegrity("alice", testRealm, "wonderland")
	for _, s := range [][]stun.Setter{
		{stun.TransactionID, stun.BindingRequest},
		{stun.TransactionID, stun.BindingRequest, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}}},
		{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransport(17)},
		{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedTransport(17),
			stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("AQAAAAAAAAAAAAAAAAAAAAA"), stun.MessageIntegrity(key), stun.Fingerprint},
		{stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication), xorPeer(peer(9)),
			stun.RawAttribute{Type: stun.AttrData, Value: []byte("data")}},
	} {
		f.Add(stun.MustBuild(s...).Raw, uint8(0))
	}
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, uint8(1))
	f.Add([]byte{0x40, 0x01, 0xff, 0xff}, uint8(2))
	f.Fuzz(func(t *testing.T, pkt []byte, which uint8) {
		s := newSim(t, simOpts{})
		cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
		cl.allocate()
		cl.mustOK("CreatePermission", cl.permit(peer(1)))
		cl.mustOK("ChannelBind", cl.bind(0x4000, peer(1)))
		s.onCmd = func(_ int, c Command) {
			if c.Op == OpSendPeer && c.Peer.Addr() != peer(1).Addr() {
				t.Fatalf("sent to %v, which has no permission", c.Peer)
			}
		}
		switch which % 4 {
		case 0:
			s.fromClient(&cl.c, pkt)
		case 1:
			stranger := s.client(UDP, "198.51.100.2:1000", "", "")
			s.fromClient(&stranger.c, pkt)
		case 2:
			tcp := s.client(TCP, "198.51.100.3:1000", "", "")
			s.fromClient(&tcp.c, pkt)
		case 3:
			s.fromPeer(peer(int(which)), cl.relay, pkt)
		}
	})
}
