//go:build linux

package fastpath

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/internal/testutil"
)

const (
	toPeer   = `ferry_offload_packets_total{path="to_peer"}`
	fromPeer = `ferry_offload_packets_total{path="from_peer"}`
	channels = `ferry_offload_channels`
)

func passed(reason string) string { return `ferry_offload_passed_total{reason="` + reason + `"}` }

// TestKernelRelaysChannelData: a channel's traffic is relayed by the
// program, byte-exact both ways, with correct checksums, counted in the
// program's maps and folded into ferry's metrics and admin API, while
// ferry's own CPU stays idle (compared with the same number of packets
// relayed in user space through Send and Data indications).
func TestKernelRelaysChannelData(t *testing.T) {
	for _, mode := range []string{"tc", "xdp"} {
		t.Run(mode, func(t *testing.T) { kernelRelays(t, newLab(t, mode)) })
	}
}

func kernelRelays(t *testing.T, lb *lab) {
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			cl := lb.newClient(t, fam)
			peer := lb.peer(t, fam.peer)
			pa := addrOf(peer)
			cl.ok("CreatePermission", cl.permit(pa))
			cl.ok("ChannelBind", cl.bind(0x4000, pa))
			// One round first: XDP relays only to next hops with a
			// neighbour entry, which user space's first send makes.
			cl.channelData(0x4000, []byte("warm"), false)
			expectPeer(t, "warm-up", peer, cl.relay, []byte("warm"))
			sendTo(t, peer, []byte("warm"), cl.relay)
			cl.expectChannel("warm-up back", 0x4000, []byte("warm"))
			time.Sleep(1200 * time.Millisecond) // ferry folds the kernel's counts in every second

			csumL4, csumL6 := testutil.UDPChecksumErrors(t, lb.l)
			csumF4, csumF6 := testutil.UDPChecksumErrors(t, lb.f)
			before := lb.metrics()
			if before[channels] < 1 {
				t.Fatalf("%s = %v after ChannelBind", channels, before[channels])
			}

			// Sizes from empty to the largest whose ChannelData fits the
			// MTU, odd ones, with and without padding.
			sizes := []int{0, 1, 2, 3, 4, 5, 7, 99, 200, 511, 1000, 1200, fam.maxFromPeer() - 1, fam.maxFromPeer()}
			var bytesTo, bytesFrom int
			const rounds = 3000
			cpu0 := lb.cpuTicks()
			for i := range rounds {
				n := sizes[i%len(sizes)]
				out := payload(n)
				cl.channelData(0x4000, out, i%2 == 0)
				expectPeer(t, fmt.Sprintf("round %d, %d bytes to the peer", i, n), peer, cl.relay, out)
				back := payload(n)
				sendTo(t, peer, back, cl.relay)
				cl.expectChannel(fmt.Sprintf("round %d, %d bytes from the peer", i, n), 0x4000, back)
				bytesTo += n
				bytesFrom += n
			}
			kernelCPU := lb.cpuTicks() - cpu0

			// The same in user space: Send indications out, Data
			// indications back (a second peer, with a permission and no
			// channel).
			peer2 := lb.peer(t, fam.peer2)
			pa2 := addrOf(peer2)
			cl.ok("CreatePermission", cl.permit(pa2))
			cpu0 = lb.cpuTicks()
			for i := range rounds {
				n := sizes[i%len(sizes)]
				out := payload(n)
				cl.sendIndication(pa2, out)
				expectPeer(t, fmt.Sprintf("user-space round %d", i), peer2, cl.relay, out)
				sendTo(t, peer2, out, cl.relay)
				r, ok := cl.next(2 * time.Second)
				if !ok || r.channel != 0 || r.peer != pa2 || string(r.data) != string(out) {
					t.Fatalf("user-space round %d: Data indication %+v (ok %v)", i, r, ok)
				}
				bytesTo += n
				bytesFrom += n
			}
			userCPU := lb.cpuTicks() - cpu0
			t.Logf("ferry's CPU for %d packets: %d ticks through the kernel fast path, %d in user space", 2*rounds, kernelCPU, userCPU)
			if userCPU < 5 {
				t.Fatalf("ferry used %d ticks relaying %d packets in user space: CPU accounting is broken", userCPU, 2*rounds)
			}
			if kernelCPU*4 > userCPU {
				t.Errorf("ferry used %d ticks while the kernel relayed, %d relaying the same in user space: the fast path did not take the load", kernelCPU, userCPU)
			}

			// Every checksum verified by the receivers.
			l4, l6 := testutil.UDPChecksumErrors(t, lb.l)
			f4, f6 := testutil.UDPChecksumErrors(t, lb.f)
			if l4 != csumL4 || l6 != csumL6 || f4 != csumF4 || f6 != csumF6 {
				t.Errorf("UDP checksum errors: L %d/%d (was %d/%d), F %d/%d (was %d/%d)", l4, l6, csumL4, csumL6, f4, f6, csumF4, csumF6)
			}

			// The program's counters: every ChannelData, nothing of the
			// indications. ferry folds them in on its next tick.
			time.Sleep(1200 * time.Millisecond)
			after := lb.metrics()
			// XDP cannot see whether a packet's checksum is complete:
			// it takes one whose checksum field equals the pseudo-header
			// sum (what a CHECKSUM_PARTIAL packet carries) for partial
			// and leaves it to user space. A complete checksum matches
			// by chance about once in 65,536 packets; those are relayed
			// in user space, counted by that reason.
			var partialTo, partialFrom float64
			if lb.mode == "xdp" {
				partial := delta(before, after, passed("checksum_partial"))
				partialTo = rounds - delta(before, after, toPeer)
				partialFrom = rounds - delta(before, after, fromPeer)
				if partial > 2 || partialTo < 0 || partialFrom < 0 || partialTo+partialFrom != partial {
					t.Errorf("%v packets passed as checksum_partial, %v to the peer and %v from it not offloaded: more than chance, or unexplained", partial, partialTo, partialFrom)
				}
			}
			for _, c := range []struct {
				series string
				want   float64
			}{
				{toPeer, rounds - partialTo},
				{fromPeer, rounds - partialFrom},
				{`ferry_relay_offloaded_packets_total{direction="to_peer"}`, rounds - partialTo},
				{`ferry_relay_offloaded_packets_total{direction="from_peer"}`, rounds - partialFrom},
				{`ferry_relay_packets_total{direction="to_peer"}`, 2 * rounds},
				{`ferry_relay_packets_total{direction="from_peer"}`, 2 * rounds},
				{`ferry_relay_bytes_total{direction="to_peer"}`, float64(bytesTo)},
				{`ferry_relay_bytes_total{direction="from_peer"}`, float64(bytesFrom)},
				{`ferry_offload_errors_total`, 0},
			} {
				if got := delta(before, after, c.series); got != c.want {
					t.Errorf("%s grew by %v, want %v", c.series, got, c.want)
				}
			}
			if t.Failed() {
				logPassed(t, before, after)
			}
			// The admin API counts the allocation's whole life: the
			// warm-up round too.
			a := lb.allocation(cl.relay)
			if a["to_peer_packets"] != float64(2*rounds+1) || a["to_peer_bytes"] != float64(bytesTo+4) || a["from_peer_bytes"] != float64(bytesFrom+4) {
				t.Errorf("admin API counts %v packets, %v bytes to the peer, %v from; want %d, %d, %d",
					a["to_peer_packets"], a["to_peer_bytes"], a["from_peer_bytes"], 2*rounds+1, bytesTo+4, bytesFrom+4)
			}
		})
	}
}

// TestFallbacksStillRelayed: what the program leaves to user space
// reaches ferry unchanged and is handled as without the fast path; each
// case is counted under its reason.
func TestFallbacksStillRelayed(t *testing.T) {
	lb := newLab(t, "tc")
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			cl := lb.newClient(t, fam)
			peer, peer2 := lb.peer(t, fam.peer), lb.peer(t, fam.peer2)
			pa, pa2 := addrOf(peer), addrOf(peer2)
			cl.ok("CreatePermission", cl.permit(pa, pa2))
			cl.ok("ChannelBind", cl.bind(0x4000, pa))
			// One round through the kernel, which also resolves the
			// neighbours both ways.
			cl.channelData(0x4000, []byte("warm"), false)
			expectPeer(t, "warm-up", peer, cl.relay, []byte("warm"))
			sendTo(t, peer, []byte("warm"), cl.relay)
			cl.expectChannel("warm-up back", 0x4000, []byte("warm"))

			fragment := "fragment"
			if fam.ferry.Is6() {
				fragment = "ipv6_extension"
			}
			cases := []struct {
				name   string
				reason string // the program's reason, "" when not checked
				drop   string // ferry's drop reason when it drops it, else ""
				run    func(t *testing.T)
			}{
				{"send indication", "not_channel", "", func(t *testing.T) {
					data := payload(300)
					cl.sendIndication(pa2, data)
					expectPeer(t, "Send indication", peer2, cl.relay, data)
				}},
				{"peer without a channel", "not_channel", "", func(t *testing.T) {
					data := payload(300)
					data[0] = 0x01 // not ChannelData-looking either (that would be no_entry)
					sendTo(t, peer2, data, cl.relay)
					r, ok := cl.next(2 * time.Second)
					if !ok || r.channel != 0 || r.peer != pa2 || string(r.data) != string(data) {
						t.Fatalf("Data indication %+v (ok %v)", r, ok)
					}
				}},
				{"channel not bound", "no_entry", "policy", func(t *testing.T) {
					cl.channelData(0x4001, payload(100), false)
					expectPeerNothing(t, "unbound channel", peer)
					expectPeerNothing(t, "unbound channel", peer2)
				}},
				{"length past the datagram", "bad_length", "malformed", func(t *testing.T) {
					b := channelData(0x4000, payload(100), false)
					cl.sendRaw(b[:60])
					expectPeerNothing(t, "truncated ChannelData", peer)
				}},
				{"too large for the MTU once grown", "mtu", "", func(t *testing.T) {
					data := payload(fam.maxFromPeer() + 1)
					sendTo(t, peer, data, cl.relay)
					cl.expectChannel("grown past the MTU", 0x4000, data)
				}},
				{"fragmented", fragment, "", func(t *testing.T) {
					data := payload(1800)
					cl.channelData(0x4000, data, false)
					expectPeer(t, "fragmented ChannelData", peer, cl.relay, data)
					back := payload(1800)
					sendTo(t, peer, back, cl.relay)
					cl.expectChannel("fragmented datagram from the peer", 0x4000, back)
				}},
				// ferry reads datagrams of up to 2048 bytes; larger ones
				// are dropped and counted, with or without the fast path.
				{"fragmented, too large for ferry", fragment, "oversized", func(t *testing.T) {
					cl.channelData(0x4000, payload(3000), false)
					expectPeerNothing(t, "3000-byte ChannelData", peer)
				}},
			}
			if fam.ferry.Is4() {
				cases = append(cases, struct {
					name, reason, drop string
					run                func(t *testing.T)
				}{"ip options", "fragment", "", func(t *testing.T) {
					// A second client whose datagrams carry IPv4 options
					// (NOP NOP NOP EOL).
					opt := lb.newClient(t, fam, func(c *net.UDPConn) {
						rc, err := c.SyscallConn()
						if err != nil {
							t.Fatal(err)
						}
						var serr error
						if err := rc.Control(func(fd uintptr) {
							serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x00")
						}); err != nil || serr != nil {
							t.Fatalf("IP_OPTIONS: %v %v", err, serr)
						}
					})
					opt.ok("CreatePermission", opt.permit(pa))
					opt.ok("ChannelBind", opt.bind(0x4000, pa))
					data := payload(200)
					opt.channelData(0x4000, data, false)
					expectPeer(t, "ChannelData with IP options", peer, opt.relay, data)
				}})
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					before := lb.metrics()
					c.run(t)
					after := lb.metrics()
					if c.reason != "" && delta(before, after, passed(c.reason)) < 1 {
						t.Errorf("%s did not grow", passed(c.reason))
					}
					if c.drop != "" {
						if s := `ferry_packets_dropped_total{reason="` + c.drop + `"}`; delta(before, after, s) < 1 {
							t.Errorf("ferry did not count the drop: %s unchanged", s)
						}
					}
					if got := delta(before, after, "ferry_offload_errors_total"); got != 0 {
						t.Errorf("the program dropped %v packets on errors", got)
					}
				})
			}
		})
	}
}

// TestEntriesFollowAllocations: an entry goes when its allocation ends
// (deallocation, admin close, drain) and nothing is relayed after; a
// denied peer never gets one; a refused rebind leaves it where it was.
func TestEntriesFollowAllocations(t *testing.T) {
	lb := newLab(t, "tc")
	fam := families[0]
	// relayed binds a channel from a new client to a new peer and relays
	// one datagram each way through the kernel.
	relayed := func(t *testing.T) (*client, *net.UDPConn) {
		t.Helper()
		cl := lb.newClient(t, fam)
		peer := lb.peer(t, fam.peer)
		cl.ok("CreatePermission", cl.permit(addrOf(peer)))
		cl.ok("ChannelBind", cl.bind(0x4000, addrOf(peer)))
		before := lb.metrics()
		cl.channelData(0x4000, []byte("to"), false)
		expectPeer(t, "before", peer, cl.relay, []byte("to"))
		sendTo(t, peer, []byte("from"), cl.relay)
		cl.expectChannel("before", 0x4000, []byte("from"))
		after := lb.metrics()
		if delta(before, after, toPeer) != 1 || delta(before, after, fromPeer) != 1 {
			for k, v := range after {
				if v != before[k] && strings.HasPrefix(k, "ferry_offload") {
					t.Logf("%s +%v", k, v-before[k])
				}
			}
			t.Fatal("the channel was not relayed by the kernel")
		}
		return cl, peer
	}
	// gone checks that nothing is relayed either way any more.
	gone := func(t *testing.T, cl *client, peer *net.UDPConn) {
		t.Helper()
		cl.channelData(0x4000, []byte("after"), false)
		expectPeerNothing(t, "after the end", peer)
		sendTo(t, peer, []byte("after"), cl.relay)
		cl.expectNothing("after the end")
		if n := lb.metrics()[channels]; n != 0 {
			t.Fatalf("%s = %v after the allocation ended", channels, n)
		}
	}

	t.Run("deallocation", func(t *testing.T) {
		cl, peer := relayed(t)
		cl.ok("Refresh 0", cl.request(stun.MethodRefresh, true, stunLifetime(0)))
		gone(t, cl, peer)
		// The end line counts what the kernel relayed, though no tick
		// came between the traffic and the end.
		end := regexp.MustCompile(`msg="allocation deleted" client=` + regexp.QuoteMeta(addrOf(cl.c).String()) +
			` .*reason=client packets_to_peer=1 packets_from_peer=1`)
		testutil.WaitFor(t, 2*time.Second, "the end line with the kernel's counts", func() bool { return end.MatchString(lb.ferry.Output()) })
	})
	t.Run("admin close", func(t *testing.T) {
		cl, peer := relayed(t)
		if code, body := lb.admin("DELETE", "allocations/"+cl.relay.String()); code != 200 {
			t.Fatalf("admin close: %d %s", code, body)
		}
		gone(t, cl, peer)
	})
	t.Run("denied peer", func(t *testing.T) {
		cl := lb.newClient(t, fam)
		denied := lb.peer(t, fam.deny)
		da := addrOf(denied)
		if code := errorCode(cl.permit(da)); code != 403 {
			t.Fatalf("CreatePermission to a denied peer: %d, want 403", code)
		}
		if code := errorCode(cl.bind(0x4000, da)); code != 403 {
			t.Fatalf("ChannelBind to a denied peer: %d, want 403", code)
		}
		if n := lb.metrics()[channels]; n != 0 {
			t.Fatalf("%s = %v after binds to a denied peer", channels, n)
		}
		before := lb.metrics()
		sendTo(t, denied, []byte("let me in"), cl.relay)
		cl.expectNothing("a denied peer's datagram")
		cl.channelData(0x4000, []byte("out"), false)
		expectPeerNothing(t, "ChannelData to a denied peer", denied)
		after := lb.metrics()
		if delta(before, after, toPeer)+delta(before, after, fromPeer) != 0 {
			t.Fatal("the kernel relayed to or from a denied peer")
		}
		cl.ok("Refresh 0", cl.request(stun.MethodRefresh, true, stunLifetime(0)))
	})
	t.Run("refused rebind", func(t *testing.T) {
		cl, peer := relayed(t)
		peer2 := lb.peer(t, fam.peer2)
		cl.ok("CreatePermission", cl.permit(addrOf(peer2)))
		if code := errorCode(cl.bind(0x4000, addrOf(peer2))); code != 400 {
			t.Fatalf("rebinding a live channel to another peer: %d, want 400", code)
		}
		before := lb.metrics()
		cl.channelData(0x4000, []byte("still"), false)
		expectPeer(t, "after a refused rebind", peer, cl.relay, []byte("still"))
		expectPeerNothing(t, "after a refused rebind", peer2)
		sendTo(t, peer2, []byte("not a channel"), cl.relay)
		if r, ok := cl.next(2 * time.Second); !ok || r.channel != 0 {
			t.Fatalf("the other peer's datagram: %+v (ok %v), want a Data indication", r, ok)
		}
		if delta(before, lb.metrics(), toPeer) != 1 {
			t.Fatal("the channel left the kernel after a refused rebind")
		}
		cl.ok("Refresh 0", cl.request(stun.MethodRefresh, true, stunLifetime(0)))
	})
	t.Run("drain", func(t *testing.T) {
		cl, peer := relayed(t)
		if err := syscall.Kill(lb.ferry.Pid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// While draining, live allocations keep relaying in the kernel.
		time.Sleep(200 * time.Millisecond)
		cl.channelData(0x4000, []byte("draining"), false)
		expectPeer(t, "while draining", peer, cl.relay, []byte("draining"))
		select {
		case <-lb.ferry.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("ferry did not stop after its 2s drain")
		}
		if out := lb.ferry.Output(); !regexpEnded.MatchString(out) {
			t.Fatal("no allocation ended with reason shutdown")
		}
		cl.channelData(0x4000, []byte("stopped"), false)
		expectPeerNothing(t, "after the drain", peer)
		sendTo(t, peer, []byte("stopped"), cl.relay)
		cl.expectNothing("after the drain")
	})
}

type stunLifetime uint32

func (l stunLifetime) AddTo(m *stun.Message) error {
	v := uint32(l)
	m.Add(stun.AttrLifetime, []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return nil
}

var regexpEnded = regexp.MustCompile(`msg="allocation deleted" .*reason=shutdown`)

// logPassed logs which of the program's pass reasons grew: why packets
// went to user space instead.
func logPassed(t *testing.T, before, after map[string]float64) {
	t.Helper()
	for k, v := range after {
		if strings.HasPrefix(k, "ferry_offload_passed_total") && v != before[k] {
			t.Logf("%s grew by %v", k, v-before[k])
		}
	}
}
