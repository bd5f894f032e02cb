//go:build linux && (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64)

package offload

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// TestRelayLoopback relays between addresses of one namespace's loopback,
// as ferry's browser and interop tests do (127.0.0.1 and friends): TC on
// lo rewrites and the stack delivers locally. Loopback packets are
// CHECKSUM_PARTIAL (and trusted as such by the receiver), so TC takes the
// payload-moving path, and XDP leaves them all to user space. With IP
// forwarding on, bpf_fib_lookup says "local" (delivered with TC_ACT_OK);
// off, TC sends with bpf_redirect_neigh through lo.
func TestRelayLoopback(t *testing.T) {
	requireLab(t)
	ns := newNS(t, "LO")
	for _, a := range []string{"2001:db8:1::1/128", "2001:db8:1::2/128", "2001:db8:1::3/128"} {
		run(t, "ip", "-n", ns, "addr", "add", a, "dev", "lo", "nodad")
	}
	type fam struct {
		name                                  string
		listener, relay, relay2, client, peer netip.AddrPort
		client2                               netip.AddrPort
	}
	ap := netip.MustParseAddrPort
	fams := []fam{
		{"ipv4", ap("127.0.0.1:3478"), ap("127.0.0.1:40000"), ap("127.0.0.1:40001"), ap("127.0.0.2:50000"), ap("127.0.0.3:5000"), ap("127.0.0.3:50001")},
		{"ipv6", ap("[2001:db8:1::1]:3478"), ap("[2001:db8:1::1]:40000"), ap("[2001:db8:1::1]:40001"), ap("[2001:db8:1::2]:50000"), ap("[2001:db8:1::3]:5000"), ap("[2001:db8:1::3]:50001")},
	}
	type lsocks struct{ listener, relay, relay2, client, client2, peer *net.UDPConn }
	socks := make([]lsocks, len(fams))
	for i, f := range fams {
		socks[i] = lsocks{
			listen(t, ns, f.listener), listen(t, ns, f.relay), listen(t, ns, f.relay2),
			listen(t, ns, f.client), listen(t, ns, f.client2), listen(t, ns, f.peer),
		}
	}
	for _, mode := range []string{ModeTC, ModeXDPGeneric} {
		for _, fwd := range []string{"0", "1"} {
			t.Run(mode+"/forwarding="+fwd, func(t *testing.T) {
				run(t, "ip", "netns", "exec", ns, "sysctl", "-qw",
					"net.ipv4.conf.all.forwarding="+fwd, "net.ipv6.conf.all.forwarding="+fwd)
				off := openIn(t, ns, Options{Mode: mode, Interfaces: []string{"lo"}, Log: testutil.Logger(t)})
				for i, f := range fams {
					t.Run(f.name, func(t *testing.T) {
						s := socks[i]
						ch := Channel{Client: f.client, Listener: f.listener, Relay: f.relay, Peer: f.peer,
							Number: 0x4000, Expires: time.Now().Add(time.Hour)}
						mustPut(t, off, ch)
						defer func() { _ = off.Delete(ch) }()
						before := mustStats(t, off)
						sizes := []int{0, 1, 3, 100, 1200, 8000}
						for _, n := range sizes {
							d := payload(n)
							cd := channelData(0x4000, d, 0)
							send(t, s.client, cd, f.listener)
							e := payload(n)
							if mode == ModeTC {
								expect(t, "client→peer", s.peer, d, f.relay)
								send(t, s.peer, e, f.relay)
								expect(t, "peer→client", s.client, channelData(0x4000, e, 0), f.listener)
							} else {
								expect(t, "client→peer (user space)", s.listener, cd, f.client)
								send(t, s.peer, e, f.relay)
								expect(t, "peer→client (user space)", s.relay, e, f.peer)
							}
						}
						// Larger than the program's scratch buffer (8192):
						// user space.
						huge := channelData(0x4000, payload(9000), 0)
						send(t, s.client, huge, f.listener)
						expect(t, "9000 bytes", s.listener, huge, f.client)
						// Channel to channel on loopback.
						a := Channel{Client: f.client, Listener: f.listener, Relay: f.relay, Peer: f.relay2, Number: 0x4000}
						b := Channel{Client: f.client2, Listener: f.listener, Relay: f.relay2, Peer: f.relay, Number: 0x4001}
						mustPut(t, off, a)
						mustPut(t, off, b)
						cd := payload(33)
						send(t, s.client, channelData(0x4000, cd, 0), f.listener)
						if mode == ModeTC {
							expect(t, "A→B", s.client2, channelData(0x4001, cd, 0), f.listener)
						} else {
							expect(t, "A→B (user space)", s.listener, channelData(0x4000, cd, 0), f.client)
						}
						_ = off.Delete(b)
						if mode == ModeTC {
							silent(t, "loopback", s.listener, s.relay, s.relay2, s.peer, s.client)
						} else {
							silent(t, "loopback", s.peer, s.client, s.client2)
						}
						d := statsDelta(before, mustStats(t, off))
						t.Logf("stats delta %+v", d)
						n := uint64(2 * len(sizes))
						if mode == ModeTC {
							if d.ToPeer+d.FromPeer != n || d.ChannelToChannel != 1 || d.ChecksumPartial != n+1 || d.PassChecksumPartial != 1 {
								t.Errorf("Stats delta %+v, want %d rewritten, 1 channel to channel, all CHECKSUM_PARTIAL", d, n)
							}
							if fwd == "1" && d.Local != n+1 || fwd == "0" && d.RedirectNeigh != n+1 {
								t.Errorf("Stats delta %+v, want %d delivered locally (forwarding on) or redirected (off)", d, n+1)
							}
						} else if d.PassChecksumPartial != n+2 {
							t.Errorf("Stats delta %+v, want PassChecksumPartial %d", d, n+2)
						}
					})
				}
			})
		}
	}
}
