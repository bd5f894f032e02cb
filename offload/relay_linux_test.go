//go:build linux && (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64)

package offload

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestRelayVeth relays through the program between two namespaces joined
// by a veth pair, for each attach mode and address family: both
// directions byte-exact with checksums verified by the receiving kernel,
// every fallback reaching ferry's sockets unchanged, Delete and moving a
// channel, channel to channel, and CHECKSUM_PARTIAL packets.
func TestRelayVeth(t *testing.T) {
	requireLab(t)
	lab := newVethLab(t)
	fams := families()
	ss := make([]*socks, len(fams))
	for i, fam := range fams {
		ss[i] = lab.sockets(t, fam)
	}
	// Native XDP on a veth is left out: XDP_TX goes through the peer's
	// NAPI (GRO or an XDP program on lab0), and even with GRO on the
	// first datagrams sat undelivered in L; ModeAuto uses TC on veth.
	for _, mode := range []string{ModeTC, ModeXDPGeneric} {
		t.Run(mode, func(t *testing.T) {
			off := openIn(t, lab.f, Options{Mode: mode, Interfaces: []string{"fer0"}, Log: testutil.Logger(t)})
			if got := off.Attached(); len(got) != 1 || got[0].Interface != "fer0" || got[0].Mode != mode {
				t.Fatalf("Attached() = %+v, want vf in %s", got, mode)
			}
			for i, fam := range fams {
				t.Run(fam.name, func(t *testing.T) {
					r := &relayCase{t: t, lab: lab, off: off, fam: fam, s: ss[i], mode: mode}
					r.clientToPeer()
					r.zeroChecksum()
					r.peerToClient()
					r.fallbacks()
					r.deleteAndMove()
					r.channelToChannel()
					r.checksumPartial()
					r.noForwarding()
				})
			}
		})
	}
}

type relayCase struct {
	t    *testing.T
	lab  *vethLab
	off  *Offload
	fam  family
	s    *socks
	mode string
}

func (r *relayCase) channel() Channel {
	return Channel{
		Client:   r.fam.clientAP,
		Listener: r.fam.listener,
		Relay:    r.fam.relay,
		Peer:     r.fam.peerAP,
		Number:   0x4000,
		Expires:  time.Now().Add(time.Hour),
	}
}

// csumCheck returns a function that fails the test when L's kernel
// counted UDP checksum errors since.
func (r *relayCase) csumCheck() func() {
	t := r.t
	v4, v6 := csumErrors(t, r.lab.l)
	return func() {
		t.Helper()
		a4, a6 := csumErrors(t, r.lab.l)
		if a4 != v4 || a6 != v6 {
			t.Errorf("InCsumErrors in L went from %d/%d to %d/%d (Udp/Udp6)", v4, v6, a4, a6)
		}
	}
}

func (r *relayCase) clientToPeer() {
	t, s, fam := r.t, r.s, r.fam
	ch := r.channel()
	mustPut(t, r.off, ch)
	defer func() { _ = r.off.Delete(ch) }()
	check := r.csumCheck()
	before := mustStats(t, r.off)
	type msg struct{ n, pad int }
	msgs := []msg{{0, 0}, {1, 0}, {2, 0}, {3, 0}, {4, 0}, {5, 0}, {101, 0}, {1200, 0},
		{fam.mtuPayload - 4, 0}, {1, 3}, {2, 2}, {5, 3}, {101, 1}, {0, 3}}
	var bytes uint64
	for _, m := range msgs {
		data := payload(m.n)
		send(t, s.client, channelData(0x4000, data, m.pad), fam.listener)
		expect(t, "client→peer", s.peer, data, fam.relay)
		bytes += uint64(m.n)
	}
	silent(t, "client→peer", s.ferry()...)
	check()
	c := mustCounters(t, r.off, ch)
	if c.ToPeerPackets != uint64(len(msgs)) || c.ToPeerBytes != bytes || c.FromPeerPackets != 0 {
		t.Errorf("Counters = %+v, want %d packets and %d bytes to the peer", c, len(msgs), bytes)
	}
	d := statsDelta(before, mustStats(t, r.off))
	if d.ToPeer != uint64(len(msgs)) || d.DropError != 0 {
		t.Errorf("Stats delta %+v, want ToPeer %d", d, len(msgs))
	}
}

// zeroChecksum sends IPv4 datagrams without a UDP checksum (SO_NO_CHECK:
// checksum 0, "none"); the rewritten datagrams must keep 0, or L's kernel
// would find the checksum wrong.
func (r *relayCase) zeroChecksum() {
	t, s, fam := r.t, r.s, r.fam
	if fam.name != "ipv4" {
		return
	}
	noCheck := func(c interface {
		SyscallConn() (syscall.RawConn, error)
	}, on int) {
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, on)
		}); err != nil || serr != nil {
			t.Fatalf("SO_NO_CHECK: %v %v", err, serr)
		}
	}
	noCheck(s.client, 1)
	noCheck(s.peer, 1)
	defer noCheck(s.client, 0)
	defer noCheck(s.peer, 0)
	ch := r.channel()
	mustPut(t, r.off, ch)
	defer func() { _ = r.off.Delete(ch) }()
	check := r.csumCheck()
	before := mustStats(t, r.off)
	for _, n := range []int{0, 7, 300} {
		d := payload(n)
		send(t, s.client, channelData(0x4000, d, 1), fam.listener)
		expect(t, "no checksum client→peer", s.peer, d, fam.relay)
		e := payload(n)
		send(t, s.peer, e, fam.relay)
		expect(t, "no checksum peer→client", s.client, channelData(0x4000, e, 0), fam.listener)
	}
	silent(t, "no checksum", s.ferry()...)
	check()
	if d := statsDelta(before, mustStats(t, r.off)); d.ToPeer != 3 || d.FromPeer != 3 {
		t.Errorf("Stats delta %+v, want 3 each way", d)
	}
}

func (r *relayCase) peerToClient() {
	t, s, fam := r.t, r.s, r.fam
	ch := r.channel()
	mustPut(t, r.off, ch)
	defer func() { _ = r.off.Delete(ch) }()
	check := r.csumCheck()
	sizes := []int{0, 1, 3, 4, 100, 1200, fam.mtuPayload - 4}
	var bytes uint64
	for _, n := range sizes {
		data := payload(n)
		send(t, s.peer, data, fam.relay)
		expect(t, "peer→client", s.client, channelData(0x4000, data, 0), fam.listener)
		bytes += uint64(n)
	}
	silent(t, "peer→client", s.ferry()...)
	check()
	c := mustCounters(t, r.off, ch)
	if c.FromPeerPackets != uint64(len(sizes)) || c.FromPeerBytes != bytes || c.ToPeerPackets != 0 {
		t.Errorf("Counters = %+v, want %d packets and %d bytes from the peer", c, len(sizes), bytes)
	}
}

// fallbacks sends what the program must leave to user space and checks
// that ferry's sockets receive it unchanged.
func (r *relayCase) fallbacks() {
	t, s, fam := r.t, r.s, r.fam
	ch := r.channel()
	mustPut(t, r.off, ch)
	defer func() { _ = r.off.Delete(ch) }()
	before := mustStats(t, r.off)
	var want Stats

	stun := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	send(t, s.client, stun, fam.listener)
	expect(t, "STUN", s.listener, stun, fam.clientAP)
	want.PassNotChannel++

	unknown := channelData(0x4001, payload(10), 0)
	send(t, s.client, unknown, fam.listener)
	expect(t, "unknown channel", s.listener, unknown, fam.clientAP)
	want.PassNoEntry++

	long := channelData(0x4000, payload(10), 0)
	long[3] = 100 // length field past the end
	send(t, s.client, long, fam.listener)
	expect(t, "length past the end", s.listener, long, fam.clientAP)
	want.PassBadLength++

	trailing := channelData(0x4000, payload(10), 4) // more than padding after the data
	send(t, s.client, trailing, fam.listener)
	expect(t, "4 bytes after the data", s.listener, trailing, fam.clientAP)
	want.PassBadLength++

	frag := channelData(0x4000, payload(2000), 0) // larger than the MTU: fragments
	send(t, s.client, frag, fam.listener)
	expect(t, "fragmented", s.listener, frag, fam.clientAP)
	if fam.name == "ipv4" {
		want.PassFragment += 2
	} else {
		want.PassIPv6Ext += 2
	}

	big := payload(fam.mtuPayload) // exactly the MTU; 4 bytes more after the rewrite
	send(t, s.peer, big, fam.relay)
	expect(t, "peer→client over the MTU", s.relay, big, fam.peerAP)
	want.PassMTU++

	stray := payload(20)
	send(t, s.unbound, stray, fam.relay)
	expect(t, "peer without an entry", s.relay, stray, fam.unboundPeer)
	want.PassNoEntry++ // starts like ChannelData (payload's first byte)

	if fam.name == "ipv4" {
		// IP options: a client socket whose packets carry 4 bytes of
		// options (NOP NOP NOP EOL), with an entry of its own.
		opt := listen(t, r.lab.l, netip.AddrPortFrom(fam.client, 50003))
		raw, err := opt.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x00")
		}); err != nil || serr != nil {
			t.Fatalf("IP_OPTIONS: %v %v", err, serr)
		}
		och := ch
		och.Client = netip.AddrPortFrom(fam.client, 50003)
		mustPut(t, r.off, och)
		withOpts := channelData(0x4000, payload(30), 0)
		send(t, opt, withOpts, fam.listener)
		expect(t, "IP options", s.listener, withOpts, och.Client)
		want.PassFragment++
		_ = r.off.Delete(och)
	}

	// No neighbour for the peer yet: TC sends with bpf_redirect_neigh,
	// which resolves it; XDP leaves the packet to user space.
	nch := ch
	nch.Number = 0x4002
	nch.Relay = fam.relay2
	nch.Peer = netip.AddrPortFrom(fam.noNeigh, 5000)
	mustPut(t, r.off, nch)
	nnData := payload(30)
	nn := channelData(0x4002, nnData, 0)
	if r.mode == ModeTC {
		far := listen(t, r.lab.l, nch.Peer)
		send(t, s.client, nn, fam.listener)
		expect(t, "no neighbour yet (tc resolves it)", far, nnData, nch.Relay)
		want.ToPeer++
		want.RedirectNeigh++
		_ = far.Close()
		run(t, "ip", "-n", r.lab.f, "neigh", "flush", "to", fam.noNeigh.String())
	} else {
		send(t, s.client, nn, fam.listener)
		expect(t, "no neighbour", s.listener, nn, fam.clientAP)
		want.PassFIB++
	}
	_ = r.off.Delete(nch)

	// Expired.
	ech := ch
	ech.Expires = time.Now().Add(-time.Second)
	mustPut(t, r.off, ech)
	exp := channelData(0x4000, payload(40), 0)
	send(t, s.client, exp, fam.listener)
	expect(t, "expired (client)", s.listener, exp, fam.clientAP)
	expData := payload(40)
	send(t, s.peer, expData, fam.relay)
	expect(t, "expired (peer)", s.relay, expData, fam.peerAP)
	want.PassExpired += 2
	// Refreshed, it relays again.
	mustPut(t, r.off, ch)
	ok := payload(40)
	send(t, s.client, channelData(0x4000, ok, 0), fam.listener)
	expect(t, "refreshed", s.peer, ok, fam.relay)
	want.ToPeer++

	silent(t, "fallbacks", append(s.ferry(), s.peer, s.client)...)
	d := statsDelta(before, mustStats(t, r.off))
	d.PassNotUDP = 0 // neighbour and router traffic of the lab
	if d.PassIPv6Ext >= want.PassIPv6Ext {
		d.PassIPv6Ext = want.PassIPv6Ext // and MLD reports (hop-by-hop options)
	}
	if d != want {
		t.Errorf("Stats delta\n %+v\nwant\n %+v", d, want)
	}
}

// deleteAndMove checks that Delete removes both directions and that Put
// with another peer moves the channel.
func (r *relayCase) deleteAndMove() {
	t, s, fam := r.t, r.s, r.fam
	ch := r.channel()
	mustPut(t, r.off, ch)
	a := payload(50)
	send(t, s.client, channelData(0x4000, a, 0), fam.listener)
	expect(t, "installed", s.peer, a, fam.relay)

	if err := r.off.Delete(ch); err != nil {
		t.Fatal(err)
	}
	if err := r.off.Delete(ch); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := r.off.Counters(ch); err == nil {
		t.Error("Counters of a deleted channel: no error")
	}
	cd := channelData(0x4000, payload(50), 0)
	send(t, s.client, cd, fam.listener)
	expect(t, "deleted (client)", s.listener, cd, fam.clientAP)
	pd := payload(50)
	send(t, s.peer, pd, fam.relay)
	expect(t, "deleted (peer)", s.relay, pd, fam.peerAP)

	mustPut(t, r.off, ch)
	moved := ch
	moved.Peer = fam.peer2AP
	mustPut(t, r.off, moved)
	defer func() { _ = r.off.Delete(moved) }()
	m := payload(60)
	send(t, s.client, channelData(0x4000, m, 0), fam.listener)
	expect(t, "moved (client)", s.peer2, m, fam.relay)
	back := payload(61)
	send(t, s.peer2, back, fam.relay)
	expect(t, "moved (new peer)", s.client, channelData(0x4000, back, 0), fam.listener)
	old := payload(62)
	send(t, s.peer, old, fam.relay)
	expect(t, "moved (old peer)", s.relay, old, fam.peerAP)
	silent(t, "moved", append(s.ferry(), s.peer)...)
	c := mustCounters(t, r.off, moved)
	if c.ToPeerPackets != 1 || c.FromPeerPackets != 1 || c.ToPeerBytes != 60 || c.FromPeerBytes != 61 {
		t.Errorf("Counters after the move = %+v, want 1/60 each way (61 back)", c)
	}
}

// channelToChannel binds two clients' channels to each other's relay
// address: their ChannelData goes client to client.
func (r *relayCase) channelToChannel() {
	t, s, fam := r.t, r.s, r.fam
	a := Channel{Client: fam.clientAP, Listener: fam.listener, Relay: fam.relay, Peer: fam.relay2,
		Number: 0x4000, Expires: time.Now().Add(time.Hour)}
	b := Channel{Client: fam.client2AP, Listener: fam.listener, Relay: fam.relay2, Peer: fam.relay,
		Number: 0x4005, Expires: time.Now().Add(time.Hour)}
	mustPut(t, r.off, a)
	mustPut(t, r.off, b)
	defer func() { _ = r.off.Delete(a); _ = r.off.Delete(b) }()
	check := r.csumCheck()
	before := mustStats(t, r.off)
	for _, n := range []int{0, 1, 3, 100, 1200} {
		d := payload(n)
		send(t, s.client, channelData(0x4000, d, 0), fam.listener)
		expect(t, "A→B", s.client2, channelData(0x4005, d, 0), fam.listener)
		e := payload(n + 1)
		send(t, s.client2, channelData(0x4005, e, 0), fam.listener)
		expect(t, "B→A", s.client, channelData(0x4000, e, 0), fam.listener)
	}
	silent(t, "channel to channel", s.ferry()...)
	check()
	ca, cb := mustCounters(t, r.off, a), mustCounters(t, r.off, b)
	if ca.ToPeerPackets != 5 || ca.FromPeerPackets != 5 || cb.ToPeerPackets != 5 || cb.FromPeerPackets != 5 ||
		ca.ToPeerBytes != cb.FromPeerBytes || cb.ToPeerBytes != ca.FromPeerBytes || ca.ToPeerBytes != 1304 {
		t.Errorf("Counters A %+v, B %+v; want 5 packets each way on both, A sent 1304 bytes", ca, cb)
	}
	if d := statsDelta(before, mustStats(t, r.off)); d.ChannelToChannel != 10 {
		t.Errorf("Stats delta %+v, want ChannelToChannel 10", d)
	}
}

// checksumPartial turns TX checksum offload on in L, so that the packets
// reaching F are CHECKSUM_PARTIAL: TC relays them (moving the payload),
// XDP leaves them to user space; either way what arrives is intact.
func (r *relayCase) checksumPartial() {
	t, s, fam := r.t, r.s, r.fam
	r.lab.txOffload(t, true)
	defer r.lab.txOffload(t, false)
	ch := r.channel()
	mustPut(t, r.off, ch)
	defer func() { _ = r.off.Delete(ch) }()
	check := r.csumCheck()
	before := mustStats(t, r.off)
	sizes := []int{0, 1, 3, 100, 1200}
	for _, n := range sizes {
		d := payload(n)
		cd := channelData(0x4000, d, 0)
		send(t, s.client, cd, fam.listener)
		if r.mode == ModeTC {
			expect(t, "partial client→peer", s.peer, d, fam.relay)
		} else {
			expect(t, "partial client→peer (user space)", s.listener, cd, fam.clientAP)
		}
		padded := channelData(0x4000, d, 3)
		send(t, s.client, padded, fam.listener)
		if r.mode == ModeTC {
			expect(t, "partial padded client→peer", s.peer, d, fam.relay)
		} else {
			expect(t, "partial padded client→peer (user space)", s.listener, padded, fam.clientAP)
		}
		e := payload(n)
		send(t, s.peer, e, fam.relay)
		if r.mode == ModeTC {
			expect(t, "partial peer→client", s.client, channelData(0x4000, e, 0), fam.listener)
		} else {
			expect(t, "partial peer→client (user space)", s.relay, e, fam.peerAP)
		}
	}
	silent(t, "partial", s.peer, s.client)
	check()
	d := statsDelta(before, mustStats(t, r.off))
	n := uint64(3 * len(sizes))
	if r.mode == ModeTC {
		if d.ChecksumPartial != n || d.ToPeer+d.FromPeer != n {
			t.Errorf("Stats delta %+v, want %d rewritten as CHECKSUM_PARTIAL", d, n)
		}
	} else if d.PassChecksumPartial != n {
		t.Errorf("Stats delta %+v, want PassChecksumPartial %d", d, n)
	}
}

// noForwarding turns IP forwarding off in F: bpf_fib_lookup refuses then,
// so TC sends with bpf_redirect_neigh out of the interface the packet came
// in by, and XDP leaves the packets to user space.
func (r *relayCase) noForwarding() {
	t, s, fam := r.t, r.s, r.fam
	run(t, "ip", "netns", "exec", r.lab.f, "sysctl", "-qw", "net.ipv4.conf.all.forwarding=0", "net.ipv6.conf.all.forwarding=0")
	defer run(t, "ip", "netns", "exec", r.lab.f, "sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1")
	ch := r.channel()
	mustPut(t, r.off, ch)
	defer func() { _ = r.off.Delete(ch) }()
	check := r.csumCheck()
	before := mustStats(t, r.off)
	for _, n := range []int{0, 3, 1200} {
		d := payload(n)
		cd := channelData(0x4000, d, 0)
		send(t, s.client, cd, fam.listener)
		e := payload(n)
		if r.mode == ModeTC {
			expect(t, "no forwarding client→peer", s.peer, d, fam.relay)
			send(t, s.peer, e, fam.relay)
			expect(t, "no forwarding peer→client", s.client, channelData(0x4000, e, 0), fam.listener)
		} else {
			expect(t, "no forwarding client→peer (user space)", s.listener, cd, fam.clientAP)
			send(t, s.peer, e, fam.relay)
			expect(t, "no forwarding peer→client (user space)", s.relay, e, fam.peerAP)
		}
	}
	big := payload(fam.mtuPayload)
	send(t, s.peer, big, fam.relay)
	expect(t, "no forwarding, over the MTU", s.relay, big, fam.peerAP)
	silent(t, "no forwarding", s.peer, s.client)
	check()
	d := statsDelta(before, mustStats(t, r.off))
	if r.mode == ModeTC {
		if d.RedirectNeigh != 6 || d.ToPeer != 3 || d.FromPeer != 3 || d.PassMTU != 1 {
			t.Errorf("Stats delta %+v, want 6 sent with bpf_redirect_neigh, 1 over the MTU", d)
		}
	} else if d.PassFIB != 7 {
		// XDP: bpf_fib_lookup refuses before it checks the MTU.
		t.Errorf("Stats delta %+v, want PassFIB 7", d)
	}
}

// TestOpenErrors checks Open's refusals.
func TestOpenErrors(t *testing.T) {
	requireLab(t)
	ns := newNS(t, "E")
	for _, o := range []Options{
		{Mode: "fast", Interfaces: []string{"lo"}},
		{Mode: ModeTC},
		{Mode: ModeTC, Interfaces: []string{"nonexistent0"}},
		{Mode: ModeTC, Interfaces: []string{"lo"}, MaxEntries: -1},
	} {
		err := inNS(ns, func() error {
			off, err := Open(o)
			if err == nil {
				_ = off.Close()
			}
			return err
		})
		if err == nil {
			t.Errorf("Open(%+v) succeeded", o)
		} else {
			t.Logf("Open(%+v): %v", o, err)
		}
	}
	if _, err := Open(Options{Mode: ModeOff, Interfaces: []string{"lo"}}); err != ErrOff {
		t.Errorf("Open(off) = %v, want ErrOff", err)
	}

	// Auto mode picks TC on loopback and veth (see ModeAuto).
	run(t, "ip", "-n", ns, "link", "add", "name", "va", "type", "veth", "peer", "name", "vb")
	run(t, "ip", "-n", ns, "link", "set", "va", "up")
	run(t, "ip", "-n", ns, "link", "set", "vb", "up")
	off := openIn(t, ns, Options{Interfaces: []string{"lo", "va"}})
	want := []Attachment{{"lo", ModeTC}, {"va", ModeTC}}
	if got := off.Attached(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("auto: Attached() = %+v, want %+v", got, want)
	}
	// An interface that already has an XDP link refuses another: Open
	// fails and detaches what it attached before (va), which is then
	// free for the next Open.
	err := inNS(ns, func() error {
		held, err := Open(Options{Mode: ModeXDPGeneric, Interfaces: []string{"vb"}})
		if err != nil {
			return err
		}
		defer held.Close()
		if x, err := Open(Options{Mode: ModeXDPGeneric, Interfaces: []string{"va", "vb"}}); err == nil {
			_ = x.Close()
			return errors.New("Open with vb already holding an XDP link succeeded")
		} else {
			t.Logf("vb busy: %v", err)
		}
		again, err := Open(Options{Mode: ModeXDPGeneric, Interfaces: []string{"va"}})
		if err != nil {
			return fmt.Errorf("va not detached after the failed Open: %w", err)
		}
		return again.Close()
	})
	if err != nil {
		t.Error(err)
	}
}

// TestPutErrors checks Put's refusals and Close's idempotence.
func TestPutErrors(t *testing.T) {
	requireLab(t)
	ns := newNS(t, "P")
	off := openIn(t, ns, Options{Mode: ModeTC, Interfaces: []string{"lo"}, MaxEntries: 2})
	ap := netip.MustParseAddrPort
	good := Channel{Client: ap("198.18.0.2:1000"), Listener: ap("198.18.0.1:3478"),
		Relay: ap("198.18.0.1:40000"), Peer: ap("198.18.0.3:5000"), Number: 0x4000}
	mixed := good
	mixed.Peer = ap("[2001:db8::3]:5000")
	if err := off.Put(mixed); err == nil || !errors.Is(err, ErrMixedFamilies) {
		t.Errorf("Put(mixed) = %v, want ErrMixedFamilies", err)
	}
	wild := good
	wild.Listener = ap("0.0.0.0:3478")
	if err := off.Put(wild); err == nil {
		t.Error("Put with a wildcard listener succeeded")
	}
	num := good
	num.Number = 0x3fff
	if err := off.Put(num); err == nil {
		t.Error("Put with channel 0x3fff succeeded")
	}
	mapped := good
	mapped.Client = ap("[::ffff:198.18.0.2]:1000")
	if err := off.Put(mapped); err != nil {
		t.Errorf("Put with an IPv4-mapped client: %v", err)
	}
	if _, err := off.Counters(good); err != nil {
		t.Errorf("Counters of the channel put with a mapped address: %v", err)
	}
	second := good
	second.Client = ap("198.18.0.2:1001")
	third := good
	third.Client = ap("198.18.0.2:1002")
	if err := off.Put(second); err != nil {
		t.Fatal(err)
	}
	if err := off.Put(third); err == nil {
		t.Error("Put of a third channel into maps of 2 succeeded")
	}
	if err := off.Delete(second); err != nil {
		t.Fatal(err)
	}
	if err := off.Put(third); err != nil {
		t.Errorf("Put after Delete freed a slot: %v", err)
	}
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}
	if err := off.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := off.Put(good); err != ErrClosed {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}
	if off.Attached() != nil {
		t.Errorf("Attached after Close = %v", off.Attached())
	}
}

// TestTwoOnOneInterface: two programs on one interface (two ferries, or
// ferry and another tcx program) each relay their own channels: what one
// leaves alone reaches the next.
func TestTwoOnOneInterface(t *testing.T) {
	requireLab(t)
	lab := newVethLab(t)
	fam := families()[0]
	s := lab.sockets(t, fam)
	first := openIn(t, lab.f, Options{Mode: ModeTC, Interfaces: []string{"fer0"}, Log: testutil.Logger(t)})
	second := openIn(t, lab.f, Options{Mode: ModeTC, Interfaces: []string{"fer0"}, Log: testutil.Logger(t)})
	a := Channel{Client: fam.clientAP, Listener: fam.listener, Relay: fam.relay, Peer: fam.peerAP, Number: 0x4000, Expires: time.Now().Add(time.Hour)}
	b := Channel{Client: fam.clientAP, Listener: fam.listener, Relay: fam.relay2, Peer: fam.peer2AP, Number: 0x4001, Expires: time.Now().Add(time.Hour)}
	mustPut(t, first, a)
	mustPut(t, second, b)
	for _, c := range []struct {
		name  string
		ch    Channel
		to    *net.UDPConn
		owner *Offload
	}{{"the first program's channel", a, s.peer, first}, {"the second program's channel", b, s.peer2, second}} {
		data := payload(64)
		send(t, s.client, channelData(c.ch.Number, data, 0), fam.listener)
		expect(t, c.name, c.to, data, c.ch.Relay)
		back := payload(64)
		send(t, c.to, back, c.ch.Relay)
		expect(t, c.name+" back", s.client, channelData(c.ch.Number, back, 0), fam.listener)
		if got := mustCounters(t, c.owner, c.ch); got.ToPeerPackets != 1 || got.FromPeerPackets != 1 {
			t.Errorf("%s: counters %+v, want one packet each way", c.name, got)
		}
	}
	silent(t, "two programs", s.ferry()...)
}
