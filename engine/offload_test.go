package engine

import (
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func TestOffloadLifecycle(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.Offload = true }})
	table := s.kernel
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate(lifetime(3600))
	p := peer(1)
	cl.mustOK("ChannelBind", cl.bind(0x4000, p))
	k, ok := table[[2]netip.AddrPort{cl.relay, p}]
	if !ok || len(table) != 1 {
		t.Fatalf("table after ChannelBind: %v", table)
	}
	// The permission (5 minutes) ends before the channel (10).
	if k.Client != cl.c.Remote || k.Listener != cl.c.Local || k.Number != 0x4000 || !k.Expires.Equal(s.now.Add(PermissionLifetime)) {
		t.Fatalf("entry %+v", k.OffloadChannel)
	}
	// A refreshed permission moves the expiry.
	s.now = s.now.Add(time.Minute)
	cl.mustOK("CreatePermission", cl.permit(p))
	if got := table[[2]netip.AddrPort{cl.relay, p}].Expires; !got.Equal(s.now.Add(PermissionLifetime)) {
		t.Fatalf("expiry after refresh %v, want %v", got, s.now.Add(PermissionLifetime))
	}
	// The kernel's counts land in the allocation and the counters.
	// The kernel relays: the engine sees nothing, then counts it from the
	// kernel's counts.
	for range 3 {
		cl.channelData(0x4000, "kernel")
	}
	s.fromPeer(p, cl.relay, []byte("back"))
	if got := s.takePeer(p); len(got) != 3 {
		t.Fatalf("%d datagrams relayed by the kernel", len(got))
	}
	if ch, _, data, ok := s.takeData(cl.c.Remote); !ok || ch != 0x4000 || string(data) != "back" {
		t.Fatal("peer datagram not relayed by the kernel")
	}
	if st := s.stats(); st.ToPeerPackets != 0 {
		t.Fatalf("the engine saw %d offloaded datagrams", st.ToPeerPackets)
	}
	s.advance(time.Second)
	eng := s.eng[s.shardOf(&cl.c)]
	st := s.stats()
	if st.ToPeerPackets != 3 || st.ToPeerBytes != 18 || st.FromPeerBytes != 4 || st.OffloadedToPeer+st.OffloadedFromPeer != 4 {
		t.Fatalf("counted %d packets %d bytes to peers, %d from, offloaded %d+%d", st.ToPeerPackets, st.ToPeerBytes, st.FromPeerBytes, st.OffloadedToPeer, st.OffloadedFromPeer)
	}
	if l := eng.List(nil, s.now); len(l) != 1 || l[0].ToPeerBytes != 18 {
		t.Fatalf("admin list %+v", l)
	}
	// The permission lapses: the entry goes.
	s.advance(PermissionLifetime + time.Second)
	if len(table) != 0 {
		t.Fatalf("entry left after its permission expired: %v", table)
	}
	// Bound again, then the allocation ends: the entry goes.
	cl.mustOK("ChannelBind again", cl.bind(0x4000, p))
	if len(table) != 1 {
		t.Fatal("not offloaded again")
	}
	eng.CloseUser(&s.out, "alice", s.now)
	s.exec(eng.Shard())
	if len(table) != 0 {
		t.Fatalf("entry left after an admin close: %v", table)
	}
}

func TestOffloadOnlyWhatTheKernelMayRelay(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*Config)
		transport Transport
		peer      netip.AddrPort
		extra     []stun.Setter
		want      int
	}{
		{"udp client, IPv4 peer", nil, UDP, peer(1), nil, 1},
		{"offload off", func(c *Config) { c.Offload = false }, UDP, peer(1), nil, 0},
		{"tcp client", nil, TCP, peer(1), nil, 0},
		{"IPv6 peer of an IPv4 client", nil, UDP, netip.MustParseAddrPort("[2001:db8:1::9]:9"),
			[]stun.Setter{stun.RawAttribute{Type: 0x8000, Value: []byte{2, 0, 0, 0}}}, 0},
		{"allocation bandwidth cap", func(c *Config) { c.AllocationBandwidth = 100_000 }, UDP, peer(1), nil, 0},
		{"user bandwidth cap", func(c *Config) { c.UserBandwidth = 100_000 }, UDP, peer(1), nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, simOpts{configure: func(c *Config) {
				c.Offload = true
				if tt.configure != nil {
					tt.configure(c)
				}
			}})
			table := s.kernel
			cl := s.client(tt.transport, "198.51.100.1:1000", "alice", "wonderland")
			cl.allocate(tt.extra...)
			cl.mustOK("ChannelBind", cl.bind(0x4000, tt.peer))
			if len(table) != tt.want {
				t.Fatalf("%d entries, want %d", len(table), tt.want)
			}
		})
	}
}

// A peer the policy stops admitting (it became one of ferry's own
// addresses) leaves the fast path at the next tick.
func TestOffloadFollowsPolicy(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.Offload = true }})
	table := s.kernel
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	p := peer(7)
	cl.mustOK("ChannelBind", cl.bind(0x4000, p))
	pol := policyWithSelf(t, p.Addr())
	s.sh.SetPolicy(pol)
	s.advance(time.Second)
	if len(table) != 0 {
		t.Fatalf("denied peer still offloaded: %v", table)
	}
}

// A channel number can move to another peer only once its binding has
// expired and the rebind guard has passed; its kernel entry moves with it.
func TestOffloadChannelMovesToAnotherPeer(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.Offload = true }})
	table := s.kernel
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate(lifetime(3600))
	p1, p2 := peer(1), peer(2)
	cl.mustOK("ChannelBind", cl.bind(0x4000, p1))
	// Bound to p1, the number refuses p2, and the entry stays.
	if code := errorCode(cl.bind(0x4000, p2)); code != 400 {
		t.Fatalf("rebinding a live channel to another peer: %d, want 400", code)
	}
	if _, ok := table[[2]netip.AddrPort{cl.relay, p1}]; !ok || len(table) != 1 {
		t.Fatalf("table after a refused rebind: %v", table)
	}
	// Keep both permissions alive past the channel's lifetime and the
	// guard; the channel lapses and its entry goes.
	for elapsed := time.Duration(0); elapsed < ChannelLifetime+channelRebindGuard+time.Minute; elapsed += 4 * time.Minute {
		cl.mustOK("CreatePermission", cl.permit(p1, p2))
		s.advance(4 * time.Minute)
	}
	cl.mustOK("CreatePermission", cl.permit(p1, p2))
	if len(table) != 0 {
		t.Fatalf("entry left after the channel expired: %v", table)
	}
	cl.mustOK("ChannelBind to the other peer", cl.bind(0x4000, p2))
	k, ok := table[[2]netip.AddrPort{cl.relay, p2}]
	if !ok || len(table) != 1 || k.Number != 0x4000 {
		t.Fatalf("table after the move: %v", table)
	}
	cl.channelData(0x4000, "moved")
	if got := s.takePeer(p2); len(got) != 1 || got[0].data != "moved" {
		t.Fatalf("relayed to the new peer: %+v", got)
	}
	if got := s.takePeer(p1); len(got) != 0 {
		t.Fatalf("relayed to the old peer: %+v", got)
	}
}

// An allocation that ends with channels in the kernel logs its end once
// the data plane has reported their last counts, so the line counts what
// the kernel relayed since the last tick; an entry that was never
// installed reports nothing and still lets the line out.
func TestOffloadEndLoggedWithKernelCounts(t *testing.T) {
	var logs strings.Builder
	s := newSim(t, simOpts{configure: func(c *Config) {
		c.Offload = true
		c.Log = slog.New(slog.NewTextHandler(&logs, nil))
	}})
	cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	cl.allocate()
	cl.mustOK("ChannelBind", cl.bind(0x4000, peer(1)))
	cl.mustOK("ChannelBind", cl.bind(0x4001, peer(2)))
	// The kernel relays on both channels; no tick reports it before the
	// client releases the allocation.
	for range 3 {
		cl.channelData(0x4000, "k")
	}
	cl.channelData(0x4001, "k")
	cl.mustOK("Refresh 0", cl.do(stun.MethodRefresh, lifetime(0)))
	eng := s.eng[s.shardOf(&cl.c)]
	if len(eng.ending) != 0 {
		t.Fatalf("%d allocations still awaiting their last counts", len(eng.ending))
	}
	if !regexp.MustCompile(`msg="allocation deleted" .*reason=client packets_to_peer=4 `).MatchString(logs.String()) {
		t.Fatalf("end line without the kernel's counts:\n%s", logs.String())
	}
	// The kernel refused the entry (the data plane's Put failed): the
	// removal reports zeros, and the line is logged.
	logs.Reset()
	cl2 := s.client(UDP, "198.51.100.2:1000", "bob", "builder")
	cl2.allocate()
	cl2.mustOK("ChannelBind", cl2.bind(0x4000, peer(1)))
	delete(s.kernel, [2]netip.AddrPort{cl2.relay, peer(1)})
	cl2.mustOK("Refresh 0", cl2.do(stun.MethodRefresh, lifetime(0)))
	if len(eng.ending) != 0 || !strings.Contains(logs.String(), `msg="allocation deleted"`) {
		t.Fatalf("end of an allocation whose entry was never installed: %d awaiting, log:\n%s", len(eng.ending), logs.String())
	}
}

// Every allocation that ends reports its usage record (OpEnded), with the
// kernel's last counts when it had channels there.
func TestUsageRecordOnEnd(t *testing.T) {
	for _, offload := range []bool{false, true} {
		s := newSim(t, simOpts{configure: func(c *Config) { c.Offload = offload }})
		cl := s.restClient("198.51.100.1:1000", "carol", testSecret, time.Hour)
		cl.allocate()
		cl.mustOK("ChannelBind", cl.bind(0x4000, peer(1)))
		for range 3 {
			cl.channelData(0x4000, "12345")
		}
		s.fromPeer(peer(1), cl.relay, []byte("back"))
		s.now = s.now.Add(90 * time.Second)
		cl.mustOK("Refresh 0", cl.do(stun.MethodRefresh, lifetime(0)))
		if len(s.ended) != 1 {
			t.Fatalf("offload %v: %d usage records", offload, len(s.ended))
		}
		r := s.ended[0]
		if r.User != "carol" || r.Username != cl.username || r.EndReason != "client" || r.Ended.IsZero() ||
			r.ToPeerPackets != 3 || r.ToPeerBytes != 15 || r.FromPeerPackets != 1 || r.FromPeerBytes != 4 || r.Transport != "udp" {
			t.Fatalf("offload %v: record %+v", offload, r)
		}
	}
}
