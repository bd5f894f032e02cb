package relay

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// FuzzGateRequest: the gate parses any bytes a client sends without
// panicking; when it edits a request it keeps its length and leaves it a
// well-formed message whose MESSAGE-INTEGRITY verifies; its answers are
// signed 508s.
func FuzzGateRequest(f *testing.F) {
	for _, raw := range [][]byte{
		request(f, stun.MethodCreatePermission, peerAt("8.8.8.8", 1), peerAt("2001:db8::9", 2)),
		request(f, stun.MethodCreatePermission, peerAt("8.8.8.8", 1), peerAt("8.8.4.4", 2), peerAt("1.1.1.1", 2)),
		request(f, stun.MethodChannelBind, channel(0x4001), peerAt("1.1.1.1", 53)),
		request(f, stun.MethodRefresh, lifetime(1800)),
		request(f, stun.MethodAllocate, lifetime(3000), rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}),
		stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw,
		{0, 3, 0, 4, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 0x0d, 0, 0},
		{},
	} {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := newGate(t, GateOptions{Permissions: 2, Channels: 1, MaxLifetime: 2 * time.Minute})
		ev := g.Events()
		ev.OnAllocationCreated(gateClient, gateLocal, "UDP", "alice", "r", gateLocal, 0)
		ev.OnPermissionCreated(gateClient, gateLocal, "UDP", "alice", "r", gateLocal, net.ParseIP("8.8.8.8"))
		ev.OnChannelCreated(gateClient, gateLocal, "UDP", "alice", "r", gateLocal, &net.UDPAddr{IP: net.ParseIP("8.8.8.8"), Port: 1}, 0x4001)
		r, ok := parseGateRequest(data)
		for i := 0; ok && i < r.npeers; i++ {
			_ = r.peer(data, i)
		}
		raw := bytes.Clone(data)
		reply := g.Check(raw, gateClient, gateLocal)
		if len(raw) != len(data) {
			t.Fatal("length changed")
		}
		if !bytes.Equal(raw, data) {
			m := &stun.Message{Raw: bytes.Clone(raw)}
			if err := m.Decode(); err != nil {
				t.Fatalf("edited request does not decode: %v", err)
			}
			if err := gateKey.Check(m); err != nil {
				t.Fatalf("edited request does not verify: %v", err)
			}
		}
		if reply != nil {
			m := &stun.Message{Raw: reply}
			if err := m.Decode(); err != nil {
				t.Fatal(err)
			}
			var ec stun.ErrorCodeAttribute
			if ec.GetFrom(m) != nil || ec.Code != 508 || gateKey.Check(m) != nil {
				t.Fatalf("bad reply %v", m)
			}
		}
	})
}
