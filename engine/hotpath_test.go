package engine

import (
	"testing"

	"github.com/pion/stun/v3"
)

// The per-packet paths allocate nothing (the Output and the packet buffers
// are the data plane's, reused).
func TestPerPacketPathsDoNotAllocate(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.AllocationBandwidth, c.UserBandwidth = 1<<30, 1<<30 }})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	p, q := peer(1), peer(2)
	cl.mustOK("CreatePermission", cl.permit(p, q))
	cl.mustOK("ChannelBind", cl.bind(0x4000, p))
	e := s.eng[s.shardOf(&cl.c)]
	relay := s.bound[cl.relay]
	var out Output
	chData := append([]byte{0x40, 0x00, 0x00, 0x64}, make([]byte, 100)...)
	send := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeer(q), stun.RawAttribute{Type: stun.AttrData, Value: make([]byte, 100)}).Raw
	buf := make([]byte, Headroom+1500+Tailroom)
	tests := []struct {
		name string
		run  func()
		want Op
	}{
		{"ChannelData to peer", func() { e.HandleClient(&out, &cl.c, chData, s.now) }, OpSendPeer},
		{"Send indication to peer", func() { e.HandleClient(&out, &cl.c, send, s.now) }, OpSendPeer},
		{"peer to channel", func() { e.HandlePeer(&out, relay, p, buf, 100, s.now) }, OpSendClient},
		{"peer to Data indication", func() { e.HandlePeer(&out, relay, q, buf, 100, s.now) }, OpSendClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(1000, func() {
				out.Reset()
				tt.run()
				if len(out.Cmds) != 1 || out.Cmds[0].Op != tt.want {
					t.Fatalf("commands %+v", out.Cmds)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per packet", allocs)
			}
		})
	}
}

func BenchmarkChannelDataToPeer(b *testing.B) {
	s := newSim(b, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	cl.mustOK("ChannelBind", cl.bind(0x4000, peer(1)))
	e := s.eng[0]
	var out Output
	pkt := append([]byte{0x40, 0x00, 0x00, 0xC8}, make([]byte, 200)...)
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		e.HandleClient(&out, &cl.c, pkt, s.now)
	}
}

func BenchmarkPeerToChannel(b *testing.B) {
	s := newSim(b, simOpts{})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	cl.mustOK("ChannelBind", cl.bind(0x4000, peer(1)))
	e := s.eng[0]
	relay := s.bound[cl.relay]
	var out Output
	buf := make([]byte, Headroom+200+Tailroom)
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		e.HandlePeer(&out, relay, peer(1), buf, 200, s.now)
	}
}

func BenchmarkAllocateRelease(b *testing.B) {
	s := newSim(b, simOpts{configure: func(c *Config) { c.UserAllocations = 0 }})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	b.ReportAllocs()
	for b.Loop() {
		cl.allocate()
		cl.mustOK("Refresh 0", cl.do(stun.MethodRefresh, lifetime(0)))
	}
}
