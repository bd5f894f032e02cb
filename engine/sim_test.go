package engine

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// modelAlloc is what the clients were told about their allocation: the
// reference the engine's behaviour is checked against.
type modelAlloc struct {
	expires time.Time
	relays  []netip.AddrPort
	perms   map[netip.Addr]time.Time
	chans   map[uint16]modelChan
	user    string
}

type modelChan struct {
	peer    netip.AddrPort
	expires time.Time
}

// TestSimulationInvariants drives the engine with random sequences of
// client requests, client and peer data, time jumps, admin closes and
// closed connections, and after every step checks that:
//   - no datagram reaches a peer, and none reaches a client from a peer,
//     without a permission the client was granted and that has not
//     expired, on an allocation that has not expired;
//   - no datagram goes to an address the peer policy refuses;
//   - ChannelData travels only on channels the client bound;
//   - state stays within the quotas, and counters match the table;
//   - every relay socket belongs to a live allocation or a reservation,
//     and when time runs out everything is released.
func TestSimulationInvariants(t *testing.T) {
	seeds := 40
	steps := 400
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { simulate(t, uint64(seed), steps) })
	}
}

func simulate(t *testing.T, seed uint64, steps int) {
	const userQuota, totalQuota, permQuota, chanQuota = 3, 7, 2, 2
	s := newSim(t, simOpts{shards: 2, users: []string{"alice=a", "bob=b", "carol=c"}, configure: func(c *Config) {
		c.UserAllocations, c.TotalAllocations, c.Permissions, c.Channels = userQuota, totalQuota, permQuota, chanQuota
		c.AuthFailureRate, c.AuthFailureBurst = 0, 0
		c.Offload = seed%2 == 1 // odd seeds relay channel traffic in the simulated kernel
	}})
	if seed%3 == 0 { // the cluster-wide user quota check, answered as one node's
		s.sh.SetClusterQuota(true)
		s.clusterQuota = userQuota
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	users := []struct{ name, pass string }{{"alice", "a"}, {"bob", "b"}, {"carol", "c"}}
	var clients []*simClient
	for i := range 9 {
		u := users[i%3]
		tr := UDP
		if i%4 == 3 {
			tr = TCP
		}
		cl := s.client(tr, fmt.Sprintf("198.51.100.%d:%d", 1+i%4, 1000+i), u.name, u.pass)
		if tr == TCP {
			s.eng[s.shardOf(&cl.c)].StreamOpened(&cl.c, s.now)
		}
		clients = append(clients, cl)
	}
	peers := []netip.AddrPort{peer(1), peer(2), peer(3), peer(4),
		netip.MustParseAddrPort("10.0.0.1:9"), netip.AddrPortFrom(relayIP4, 3478),
		netip.AddrPortFrom(relayIP4, 40002), netip.MustParseAddrPort("[2001:db8:1::5]:7")}
	pol := s.sh.Policy()
	model := map[*simClient]*modelAlloc{}
	byRelay := func(r netip.AddrPort) *modelAlloc {
		for _, m := range model {
			for _, x := range m.relays {
				if x == r {
					return m
				}
			}
		}
		return nil
	}
	ownerOf := map[netip.AddrPort]*simClient{}
	live := func(m *modelAlloc) bool { return m != nil && s.now.Before(m.expires) }
	permitted := func(m *modelAlloc, ip netip.Addr) bool {
		exp, ok := m.perms[ip]
		return ok && s.now.Before(exp)
	}
	var step string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d, %s: %s", seed, step, fmt.Sprintf(format, args...))
	}
	s.onCmd = func(_ int, c Command) {
		switch c.Op {
		case OpSendPeer:
			from := s.relays[c.Relay]
			m := byRelay(from)
			switch {
			case !live(m):
				fail("datagram to %v from relay %v of no live allocation", c.Peer, from)
			case !permitted(m, c.Peer.Addr()):
				fail("datagram to %v without a live permission", c.Peer)
			}
			if ok, why := pol.Check(c.Peer.Addr()); !ok || !pol.PortAllowed(c.Peer) {
				fail("datagram to a refused peer %v (%s)", c.Peer, why)
			}
		case OpSendClient:
			cl := ownerOf[c.Client.Remote]
			if cl == nil || len(c.Data) < 4 {
				return
			}
			m := model[cl]
			if c.Data[0]&0xC0 == 0x40 { // ChannelData from a peer
				number := uint16(c.Data[0])<<8 | uint16(c.Data[1])
				ch, ok := m.chans[number]
				if !live(m) || !ok || !s.now.Before(ch.expires) || !permitted(m, ch.peer.Addr()) {
					fail("ChannelData %x to %v without a live channel and permission", number, cl)
				}
			}
		}
	}
	for i := range steps {
		cl := clients[rng.IntN(len(clients))]
		p := peers[rng.IntN(len(peers))]
		m := model[cl]
		if m != nil && !live(m) {
			delete(model, cl)
			m = nil
		}
		switch op := rng.IntN(14); op {
		case 0, 1:
			step = fmt.Sprintf("step %d: %v Allocate", i, cl)
			args := []stun.Setter{requestedTransport(17)}
			if rng.IntN(4) == 0 {
				args = append(args, stun.RawAttribute{Type: 0x8000, Value: []byte{2, 0, 0, 0}})
			}
			if rng.IntN(3) == 0 {
				args = append(args, lifetime(uint32(rng.IntN(4000))))
			}
			resp := cl.do(stun.MethodAllocate, args...)
			if errorCode(resp) == 0 {
				cl.allocateFrom(resp)
				nm := &modelAlloc{relays: cl.relays, perms: map[netip.Addr]time.Time{}, chans: map[uint16]modelChan{},
					user: cl.username, expires: s.now.Add(time.Duration(cl.lifetime) * time.Second)}
				model[cl] = nm
				ownerOf[cl.c.Remote] = cl
			}
		case 2:
			step = fmt.Sprintf("step %d: %v Refresh", i, cl)
			lt := uint32(rng.IntN(5)) * 500
			resp := cl.do(stun.MethodRefresh, lifetime(lt))
			if errorCode(resp) == 0 {
				if m == nil {
					fail("Refresh succeeded without an allocation")
				}
				v, _ := resp.Get(stun.AttrLifetime)
				got := uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
				if got == 0 {
					delete(model, cl)
				} else {
					m.expires = s.now.Add(time.Duration(got) * time.Second)
				}
			} else if m != nil && errorCode(resp) != 437 {
				fail("Refresh of a live allocation: %d", errorCode(resp))
			}
		case 3, 4:
			step = fmt.Sprintf("step %d: %v CreatePermission %v", i, cl, p)
			resp := cl.permit(p)
			if errorCode(resp) == 0 {
				if m == nil {
					fail("CreatePermission succeeded without an allocation")
				}
				m.perms[p.Addr()] = s.now.Add(PermissionLifetime)
			}
		case 5:
			n := uint16(0x4000 + rng.IntN(5))
			step = fmt.Sprintf("step %d: %v ChannelBind %x %v", i, cl, n, p)
			resp := cl.bind(n, p)
			if errorCode(resp) == 0 {
				if m == nil {
					fail("ChannelBind succeeded without an allocation")
				}
				m.perms[p.Addr()] = s.now.Add(PermissionLifetime)
				m.chans[n] = modelChan{peer: p, expires: s.now.Add(ChannelLifetime)}
			}
		case 6:
			step = fmt.Sprintf("step %d: %v Send to %v", i, cl, p)
			cl.send(p, "send")
		case 7:
			n := uint16(0x4000 + rng.IntN(5))
			step = fmt.Sprintf("step %d: %v ChannelData %x", i, cl, n)
			before := len(s.peerRx)
			cl.channelData(n, "chan")
			if len(s.peerRx) > before {
				got := s.peerRx[len(s.peerRx)-1]
				ch, ok := m.chans[n]
				if !ok || ch.peer != got.to || !s.now.Before(ch.expires) {
					fail("ChannelData %x went to %v; the client bound it to %v until %v", n, got.to, ch.peer, ch.expires)
				}
			}
		case 8, 9:
			var relays []netip.AddrPort
			for r := range s.bound {
				relays = append(relays, r)
			}
			if len(relays) == 0 {
				continue
			}
			r := relays[rng.IntN(len(relays))]
			step = fmt.Sprintf("step %d: peer %v to relay %v", i, p, r)
			s.fromPeer(p, r, []byte("from peer"))
		case 10:
			d := time.Duration(rng.IntN(400)) * time.Second
			step = fmt.Sprintf("step %d: advance %v", i, d)
			s.advance(d)
		case 13:
			// Time passes between timer ticks: expiry must hold on the
			// packet paths, not only when the timers run.
			d := time.Duration(rng.IntN(120)) * time.Second
			step = fmt.Sprintf("step %d: clock %v without a tick", i, d)
			s.now = s.now.Add(d)
		case 11:
			user := users[rng.IntN(3)].name
			step = fmt.Sprintf("step %d: admin closes %s", i, user)
			for j, e := range s.eng {
				e.CloseUser(&s.out, user, s.now)
				s.exec(j)
			}
			for c, m := range model {
				if m.user == user {
					delete(model, c)
				}
			}
		case 12:
			step = fmt.Sprintf("step %d: %v garbage", i, cl)
			g := make([]byte, rng.IntN(40))
			for k := range g {
				g[k] = byte(rng.Uint32())
			}
			if rng.IntN(2) == 0 && len(g) > 0 {
				g[0] = 0x40
			}
			s.fromClient(&cl.c, g)
			if cl.c.Transport == TCP && rng.IntN(3) == 0 {
				step = fmt.Sprintf("step %d: %v connection closed", i, cl)
				e := s.eng[s.shardOf(&cl.c)]
				e.StreamClosed(&s.out, &cl.c, s.now)
				s.exec(e.Shard())
				delete(model, cl)
				e.StreamOpened(&cl.c, s.now)
			}
		}
		checkBounds(t, s, step, userQuota, totalQuota, permQuota, chanQuota)
	}
	step = "the end"
	s.advance(2 * time.Hour)
	s.advance(time.Minute)
	st := s.stats()
	if len(s.kernel) != 0 {
		t.Fatalf("seed %d: %d offloaded channels left after everything expired", seed, len(s.kernel))
	}
	for u, n := range s.clusterUsers {
		if n != 0 {
			t.Fatalf("seed %d: the cluster still counts %d allocations of %s", seed, n, u)
		}
	}
	if st.Allocations != 0 || len(s.relays) != 0 || st.PermissionsActive != 0 || st.ChannelsActive != 0 {
		t.Fatalf("seed %d: after everything expired: %d allocations, %d relay sockets, %d permissions, %d channels",
			seed, st.Allocations, len(s.relays), st.PermissionsActive, st.ChannelsActive)
	}
	var active uint64
	for tr := range st.Active {
		active += st.Active[tr][0] + st.Active[tr][1]
	}
	if active != 0 {
		t.Fatalf("seed %d: active gauge %d after everything ended", seed, active)
	}
}

// checkBounds checks the quotas and the books after a step.
func checkBounds(t *testing.T, s *simNet, step string, userQuota, totalQuota, permQuota, chanQuota int) {
	t.Helper()
	perUser := map[string]int{}
	total, ends := 0, 0
	var perms, chans uint64
	for _, e := range s.eng {
		if len(e.ending) != 0 {
			t.Fatalf("%s: %d ended allocations still await the fast path's last counts", step, len(e.ending))
		}
		for _, a := range e.allocs {
			if a.pending != nil {
				t.Fatalf("%s: an allocation is still pending", step)
			}
			total++
			perUser[a.username]++
			ends += a.nEnds
			if n := a.livePermissions(e.now); n > permQuota {
				t.Fatalf("%s: %d permissions", step, n)
			}
			perms += uint64(len(a.perms))
			live := 0
			for _, ch := range a.chans {
				if ch.active {
					live++
					chans++
				}
			}
			if live > chanQuota {
				t.Fatalf("%s: %d channels", step, live)
			}
		}
	}
	for u, n := range perUser {
		if n > userQuota {
			t.Fatalf("%s: user %s holds %d allocations", step, u, n)
		}
	}
	st := s.stats()
	if s.sh.clusterQuota.Load() {
		for _, u := range []string{"alice", "bob", "carol"} {
			if s.clusterUsers[u] != perUser[u] {
				t.Fatalf("%s: the cluster counts %d allocations of %s, the table %d", step, s.clusterUsers[u], u, perUser[u])
			}
		}
	}
	if total > totalQuota || st.Allocations != total {
		t.Fatalf("%s: %d allocations in the table, %d counted, quota %d", step, total, st.Allocations, totalQuota)
	}
	reserved := len(s.sh.reservations)
	if len(s.relays) != ends+reserved {
		t.Fatalf("%s: %d relay sockets open for %d relays and %d reservations", step, len(s.relays), ends, reserved)
	}
	if st.PermissionsActive != perms || st.ChannelsActive != chans {
		t.Fatalf("%s: counters say %d permissions %d channels, the table %d and %d", step, st.PermissionsActive, st.ChannelsActive, perms, chans)
	}
}
