package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// allocate allocates for user over transport and returns the relay and
// the STUN error code (0 on success). tcpRelay asks for an RFC 6062 relay.
func (f *fixture) allocate(t *testing.T, transport, user, pass string, tcpRelay bool) (func(), int) {
	t.Helper()
	c := f.client(t, transport, user, pass)
	if tcpRelay {
		a, err := c.AllocateTCP()
		if err != nil {
			return func() {}, codeOf(t, err)
		}
		return func() { _ = a.Close() }, 0
	}
	rc, err := c.Allocate()
	if err != nil {
		return func() {}, codeOf(t, err)
	}
	return func() { _ = rc.Close() }, 0
}

func codeOf(t *testing.T, err error) int {
	t.Helper()
	if c := testutil.TURNCode(err); c != 0 {
		return c
	}
	t.Fatalf("allocation failed without an error response: %v", err)
	return 0
}

// TestAllocationQuotas reaches each allocation quota and checks the code on
// the wire, for UDP and TCP (RFC 6062) relays: the per-user cap (486), the
// total cap (508), and the relay ports running out (508, at once). Freed
// allocations and failed ones give their slot back.
func TestAllocationQuotas(t *testing.T) {
	rest := func(user string) (string, string) { return auth.Mint(testSecret, user, time.Hour, time.Now()) }
	tests := []struct {
		name      string
		configure func(*config.Config, *testing.T)
		// users allocate in order; want is each one's code.
		users []string
		want  []int
	}{
		{
			name:      "per user 486",
			configure: func(c *config.Config, _ *testing.T) { c.Quota.UserAllocations = 2 },
			users:     []string{"alice", "alice", "alice", "bob", "bob"},
			want:      []int{0, 0, 486, 0, 0},
		},
		{
			name:      "total 508",
			configure: func(c *config.Config, _ *testing.T) { c.Quota.TotalAllocations = 3 },
			users:     []string{"alice", "bob", "carol", "dave", "alice"},
			want:      []int{0, 0, 0, 508, 508},
		},
		{
			// A relay that fails (no free port) gives the user's slot back:
			// the next attempt fails on ports again, not on the quota.
			name: "ports exhausted 508, quota slot released",
			configure: func(c *config.Config, t *testing.T) {
				c.Quota.UserAllocations = 2
				lo, hi := testutil.FreePortRange(t, netip.MustParseAddr("127.0.0.1"), 1)
				c.Relay.Ports = fmt.Sprintf("%d-%d", lo, hi)
			},
			users: []string{"alice", "alice", "alice", "bob"},
			want:  []int{0, 508, 508, 508},
		},
	}
	for _, tt := range tests {
		for _, relay := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+relay+"-relay", func(t *testing.T) {
				f := startServer(t, fixtureOpts{configure: func(c *config.Config) { tt.configure(c, t) }})
				transport := "udp"
				if relay == "tcp" {
					transport = "tcp"
				}
				var release []func()
				for i, name := range tt.users {
					u, p := testUser, testPass
					if name != "alice" {
						u, p = rest(name)
					}
					start := time.Now()
					rel, code := f.allocate(t, transport, u, p, relay == "tcp")
					if code != tt.want[i] {
						t.Fatalf("allocation %d (%s): code %d, want %d", i, name, code, tt.want[i])
					}
					if took := time.Since(start); took > 2*time.Second {
						t.Fatalf("allocation %d took %v", i, took)
					}
					release = append(release, rel)
				}
				// Freeing the first allocation lets its user allocate again.
				release[0]()
				testutil.WaitFor(t, 5*time.Second, "the freed allocation to be uncounted", func() bool {
					return f.srv.AllocationCount() == countZero(tt.want)-1
				})
				if _, code := f.allocate(t, transport, testUser, testPass, relay == "tcp"); code != 0 {
					t.Fatalf("allocation after a release: code %d", code)
				}
			})
		}
	}
}

func countZero(codes []int) int {
	n := 0
	for _, c := range codes {
		if c == 0 {
			n++
		}
	}
	return n
}

// TestPermissionAndChannelQuotas: past quota.permissions and
// quota.channels, CreatePermission and ChannelBind get a signed 508;
// refreshing what exists still works.
func TestPermissionAndChannelQuotas(t *testing.T) {
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			f := startServer(t, fixtureOpts{configure: func(c *config.Config) {
				c.Quota.Permissions = 2
				c.Quota.Channels = 2
			}})
			rc := newRawClient(t, f, tr)
			a, b, c, d := net.ParseIP("8.8.8.8"), net.ParseIP("9.9.9.9"), net.ParseIP("1.1.1.1"), net.ParseIP("1.0.0.1")
			key := stun.NewLongTermIntegrity(testUser, testRealm, testPass)
			steps := []struct {
				name   string
				method stun.Method
				attrs  []stun.Setter
				want   int
			}{
				{"permission a", stun.MethodCreatePermission, []stun.Setter{peerAddr{a, 1}}, 0},
				{"permission b", stun.MethodCreatePermission, []stun.Setter{peerAddr{b, 1}}, 0},
				{"refresh a and b", stun.MethodCreatePermission, []stun.Setter{peerAddr{a, 2}, peerAddr{b, 3}}, 0},
				{"permission c", stun.MethodCreatePermission, []stun.Setter{peerAddr{c, 1}}, 508},
				{"permissions a and c", stun.MethodCreatePermission, []stun.Setter{peerAddr{a, 1}, peerAddr{c, 1}}, 508},
				{"channel to a", stun.MethodChannelBind, []stun.Setter{channelNumber(0x4001), peerAddr{a, 1}}, 0},
				{"channel to a again", stun.MethodChannelBind, []stun.Setter{channelNumber(0x4001), peerAddr{a, 1}}, 0},
				{"channel to a peer without permission", stun.MethodChannelBind, []stun.Setter{channelNumber(0x4002), peerAddr{d, 1}}, 508},
				{"channel to b", stun.MethodChannelBind, []stun.Setter{channelNumber(0x4002), peerAddr{b, 1}}, 0},
				{"third channel", stun.MethodChannelBind, []stun.Setter{channelNumber(0x4003), peerAddr{a, 2}}, 508},
			}
			for _, s := range steps {
				res := rc.do(s.method, s.attrs...)
				if got := errorCode(res); got != s.want {
					t.Fatalf("%s: code %d, want %d", s.name, got, s.want)
				}
				if err := key.Check(res); err != nil {
					t.Fatalf("%s: response MESSAGE-INTEGRITY: %v", s.name, err)
				}
			}
		})
	}
}

type lifetimeAttr uint32

func (l lifetimeAttr) AddTo(m *stun.Message) error {
	m.Add(stun.AttrLifetime, []byte{byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
	return nil
}

func lifetimeOf(t *testing.T, m *stun.Message) uint32 {
	t.Helper()
	v, err := m.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		t.Fatalf("no LIFETIME in %v: %v", m.Type, err)
	}
	return uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
}

// TestMaxLifetime: a LIFETIME over quota.max-lifetime is granted the
// maximum in Allocate and Refresh, one below relay.allocation-lifetime the
// default, and the client is told so in a signed response.
func TestMaxLifetime(t *testing.T) {
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			f := startServer(t, fixtureOpts{configure: func(c *config.Config) {
				c.Relay.AllocationLifetime = time.Minute
				c.Quota.MaxLifetime = 2 * time.Minute
			}})
			key := stun.NewLongTermIntegrity(testUser, testRealm, testPass)
			rc := newRawClientWith(t, f, tr, requestedUDP{}, lifetimeAttr(1800))
			// newRawClientWith allocated with LIFETIME 1800; check with a
			// retransmission-free second look at the allocation: Refresh.
			for _, tc := range []struct{ ask, want uint32 }{
				{1800, 120}, {3599, 120}, {90, 90}, {120, 120}, {7200, 120}, {30, 60},
			} {
				res := rc.do(stun.MethodRefresh, lifetimeAttr(tc.ask))
				if res.Type.Class != stun.ClassSuccessResponse {
					t.Fatalf("Refresh %d: code %d", tc.ask, errorCode(res))
				}
				if err := key.Check(res); err != nil {
					t.Fatalf("Refresh response integrity: %v", err)
				}
				if got := lifetimeOf(t, res); got != tc.want {
					t.Errorf("Refresh LIFETIME %d granted %d, want %d", tc.ask, got, tc.want)
				}
			}
		})
	}
}

// TestBandwidthCap sends through allocations at twice their cap for a few
// seconds, in each direction, and measures what gets through.
func TestBandwidthCap(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	const (
		limit   = 40_000 // bytes/s
		payload = 1000
		pps     = 80 // twice the cap
		warmup  = 500 * time.Millisecond
		measure = 2500 * time.Millisecond
	)
	tests := []struct {
		name   string
		allocs int // allocations of the one user, sending at once
		cfg    func(*config.Config)
	}{
		{"per allocation", 1, func(c *config.Config) { c.Quota.AllocationBandwidth = limit }},
		{"per user across two allocations", 2, func(c *config.Config) { c.Quota.UserBandwidth = limit }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startServer(t, fixtureOpts{allowLoopback: true, configure: tt.cfg})
			sink := newCountingPeer(t)
			var relays []net.PacketConn
			for range tt.allocs {
				c := f.client(t, "udp", testUser, testPass)
				rc, err := c.Allocate()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = rc.Close() })
				relays = append(relays, rc)
			}
			// Client to peer.
			got := sink.rate(t, warmup, measure, func(stop <-chan struct{}) {
				var wg sync.WaitGroup
				for _, rc := range relays {
					wg.Go(func() { pace(stop, pps/len(relays), func() { _, _ = rc.WriteTo(make([]byte, payload), sink.addr) }) })
				}
				wg.Wait()
			})
			checkRate(t, "client to peer", got, limit)
			// Peer to client(s).
			var received atomic.Int64
			for _, rc := range relays {
				go func() {
					buf := make([]byte, 2000)
					for {
						n, _, err := rc.ReadFrom(buf)
						if err != nil {
							return
						}
						received.Add(int64(n))
					}
				}()
			}
			got = measureRate(warmup, measure, &received, func(stop <-chan struct{}) {
				var wg sync.WaitGroup
				for _, rc := range relays {
					wg.Go(func() {
						pace(stop, pps/len(relays), func() { _, _ = sink.pc.WriteTo(make([]byte, payload), rc.LocalAddr()) })
					})
				}
				wg.Wait()
			})
			checkRate(t, "peer to client", got, limit)
			if n := f.srv.Stats().Dropped[engine.DropBandwidth]; n == 0 {
				t.Error("no bandwidth drops counted")
			}
		})
	}
}

func checkRate(t *testing.T, what string, got, limit float64) {
	t.Helper()
	t.Logf("%s: %.0f bytes/s through a %.0f bytes/s cap (%+.1f%%)", what, got, limit, 100*(got-limit)/limit)
	if got < 0.9*limit || got > 1.1*limit {
		t.Errorf("%s: %.0f bytes/s, want %.0f ± 10%%", what, got, limit)
	}
}

// pace calls send n times a second until stop.
func pace(stop <-chan struct{}, n int, send func()) {
	tick := time.NewTicker(time.Second / time.Duration(n))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			send()
		}
	}
}

// measureRate runs send until warmup+measure and returns the bytes/s
// counted by counter during the measure window.
func measureRate(warmup, measure time.Duration, counter *atomic.Int64, send func(stop <-chan struct{})) float64 {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { send(stop); close(done) }()
	time.Sleep(warmup)
	start, t0 := counter.Load(), time.Now()
	time.Sleep(measure)
	end, t1 := counter.Load(), time.Now()
	close(stop)
	<-done
	time.Sleep(100 * time.Millisecond) // let the last packets land before the next phase
	return float64(end-start) / t1.Sub(t0).Seconds()
}

// countingPeer is a UDP peer on 127.0.0.1 that counts what it receives.
type countingPeer struct {
	pc    net.PacketConn
	addr  net.Addr
	bytes atomic.Int64
}

func newCountingPeer(t *testing.T) *countingPeer {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	p := &countingPeer{pc: pc, addr: pc.LocalAddr()}
	go func() {
		buf := make([]byte, 2000)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			p.bytes.Add(int64(n))
		}
	}()
	return p
}

func (p *countingPeer) rate(_ *testing.T, warmup, measure time.Duration, send func(stop <-chan struct{})) float64 {
	return measureRate(warmup, measure, &p.bytes, send)
}
