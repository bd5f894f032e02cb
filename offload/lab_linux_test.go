//go:build linux && (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64)

package offload

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// The tests build a small lab of network namespaces: F ("ferry") holds
// the program and ferry's sockets, L ("lab") the clients and peers, joined
// by a veth pair (fer0 in F, lab0 in L). Code runs inside a namespace on a
// goroutine locked to a thread that entered it (inNS); a socket stays in
// the namespace it was created in, so the test reads and writes them from
// any goroutine.

// nsPrefix names the test's namespaces: nsPrefix PID-RANDOM-ROLE.
const nsPrefix = "ferry-offload-"

// MAC addresses of the veth ends, fixed so that F's neighbour entries can
// be static (a FIB lookup without a neighbour falls back to user space).
const (
	macF = "02:00:5e:00:00:01"
	macL = "02:00:5e:00:00:02"
)

// requireLab skips (or fails with CI=true) unless the lab can be built.
func requireLab(t *testing.T) {
	t.Helper()
	testutil.RequireNetns(t)
	testutil.RequireTool(t, "ethtool")
	if err := Supported(); err != nil {
		testutil.Unavailable(t, "BPF: %v", err)
	}
}

// run runs a command and fails t on error.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	testutil.MustRun(t, name, args...)
}

// newNS creates an empty network namespace with lo up, deleted at cleanup.
func newNS(t *testing.T, role string) string {
	t.Helper()
	return testutil.NewNetns(t, nsPrefix, role)
}

// inNS runs fn on a new OS thread that has entered namespace ns.
func inNS(ns string, fn func() error) error { return testutil.InNetns(ns, fn) }

// listen opens a UDP socket in ns bound to addr.
func listen(t *testing.T, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	return testutil.ListenUDPIn(t, ns, addr)
}

// openIn runs Open inside ns.
func openIn(t *testing.T, ns string, o Options) *Offload {
	t.Helper()
	var off *Offload
	err := inNS(ns, func() (err error) {
		off, err = Open(o)
		return err
	})
	if err != nil {
		t.Fatalf("Open(%+v) in %s: %v", o, ns, err)
	}
	t.Cleanup(func() {
		if err := off.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Logf("attached: %+v", off.Attached())
	return off
}

// csumErrors reads InCsumErrors of UDP over IPv4 and IPv6 in ns.
func csumErrors(t *testing.T, ns string) (v4, v6 uint64) {
	t.Helper()
	return testutil.UDPChecksumErrors(t, ns)
}

// recv reads one datagram from c within d.
func recv(c *net.UDPConn, d time.Duration) ([]byte, netip.AddrPort, error) {
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}

// expect reads one datagram from c and checks it is want from from.
func expect(t *testing.T, what string, c *net.UDPConn, want []byte, from netip.AddrPort) {
	t.Helper()
	got, src, err := recv(c, 2*time.Second)
	if err != nil {
		t.Fatalf("%s: nothing received at %v: %v", what, c.LocalAddr(), err)
	}
	if src != from {
		t.Errorf("%s: from %v, want %v", what, src, from)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %d bytes %x, want %d bytes %x", what, len(got), head(got), len(want), head(want))
	}
}

// silent checks that nothing arrives at any of cs for a moment.
func silent(t *testing.T, what string, cs ...*net.UDPConn) {
	t.Helper()
	for i, c := range cs {
		d := 5 * time.Millisecond
		if i == 0 {
			d = 100 * time.Millisecond
		}
		if got, src, err := recv(c, d); err == nil {
			t.Errorf("%s: %v received %d bytes %x from %v; want nothing", what, c.LocalAddr(), len(got), head(got), src)
		}
	}
}

func head(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}

// channelData builds ChannelData with pad bytes after the data.
func channelData(ch uint16, data []byte, pad int) []byte {
	b := binary.BigEndian.AppendUint16(nil, ch)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	b = append(b, data...)
	return append(b, make([]byte, pad)...)
}

// payload returns n pseudo-random bytes whose first byte is a
// ChannelData-looking 0x40-0x7f (so a peer's datagram is not mistaken for
// anything else by accident either way).
func payload(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if n > 0 {
		b[0] = 0x40 | b[0]&0x3f
	}
	return b
}

func send(t *testing.T, c *net.UDPConn, b []byte, to netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatalf("send %d bytes from %v to %v: %v", len(b), c.LocalAddr(), to, err)
	}
}

// family is one address family's addresses in the veth lab.
type family struct {
	name                string
	ferry, client, peer netip.Addr
	noNeigh             netip.Addr // in L, but without a neighbour entry in F
	mtuPayload          int        // UDP payload of an IP packet of exactly the MTU (1500)
	listener, relay     netip.AddrPort
	relay2              netip.AddrPort
	clientAP, peerAP    netip.AddrPort
	client2AP, peer2AP  netip.AddrPort
	unboundPeer         netip.AddrPort
	labPrefix           string
}

func families() []family {
	mk := func(name, ferry, client, peer, noNeigh, prefix string, mtuPayload int) family {
		f := family{
			name:       name,
			ferry:      netip.MustParseAddr(ferry),
			client:     netip.MustParseAddr(client),
			peer:       netip.MustParseAddr(peer),
			noNeigh:    netip.MustParseAddr(noNeigh),
			mtuPayload: mtuPayload,
			labPrefix:  prefix,
		}
		f.listener = netip.AddrPortFrom(f.ferry, 3478)
		f.relay = netip.AddrPortFrom(f.ferry, 40000)
		f.relay2 = netip.AddrPortFrom(f.ferry, 40001)
		f.clientAP = netip.AddrPortFrom(f.client, 50000)
		f.client2AP = netip.AddrPortFrom(f.peer, 50001)
		f.peerAP = netip.AddrPortFrom(f.peer, 5000)
		f.peer2AP = netip.AddrPortFrom(f.peer, 5002)
		f.unboundPeer = netip.AddrPortFrom(f.peer, 5001)
		return f
	}
	return []family{
		mk("ipv4", "198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.9", "/24", 1500-20-8),
		mk("ipv6", "2001:db8:18::1", "2001:db8:18::2", "2001:db8:18::3", "2001:db8:18::9", "/64", 1500-40-8),
	}
}

// vethLab is the two namespaces, the veth pair and the sockets of one
// family.
type vethLab struct {
	f, l string
}

func newVethLab(t *testing.T) *vethLab {
	t.Helper()
	lab := &vethLab{f: newNS(t, "F"), l: newNS(t, "L")}
	run(t, "ip", "-n", lab.f, "link", "add", "name", "fer0", "address", macF, "type", "veth",
		"peer", "name", "lab0", "address", macL, "netns", lab.l)
	for _, fam := range families() {
		v6 := []string{}
		if fam.name == "ipv6" {
			v6 = []string{"nodad"}
		}
		run(t, "ip", append([]string{"-n", lab.f, "addr", "add", fam.ferry.String() + fam.labPrefix, "dev", "fer0"}, v6...)...)
		for _, a := range []netip.Addr{fam.client, fam.peer} {
			run(t, "ip", append([]string{"-n", lab.l, "addr", "add", a.String() + fam.labPrefix, "dev", "lab0"}, v6...)...)
			run(t, "ip", "-n", lab.f, "neigh", "replace", a.String(), "lladdr", macL, "dev", "fer0", "nud", "permanent")
		}
		run(t, "ip", "-n", lab.l, "neigh", "replace", fam.ferry.String(), "lladdr", macF, "dev", "lab0", "nud", "permanent")
		run(t, "ip", append([]string{"-n", lab.l, "addr", "add", fam.noNeigh.String() + fam.labPrefix, "dev", "lab0"}, v6...)...)
	}
	run(t, "ip", "-n", lab.f, "link", "set", "fer0", "up")
	run(t, "ip", "-n", lab.l, "link", "set", "lab0", "up")
	// Checksums computed in software on both sides, so the receiving
	// kernel verifies what arrives (InCsumErrors); bpf_fib_lookup needs
	// forwarding on the interface it looks up from.
	run(t, "ip", "netns", "exec", lab.f, "ethtool", "-K", "fer0", "tx", "off")
	run(t, "ip", "netns", "exec", lab.l, "ethtool", "-K", "lab0", "tx", "off")
	run(t, "ip", "netns", "exec", lab.f, "sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1")
	return lab
}

// txOffload turns L's TX checksum offload on or off: on, L's sockets send
// CHECKSUM_PARTIAL packets.
func (lab *vethLab) txOffload(t *testing.T, on bool) {
	t.Helper()
	v := "off"
	if on {
		v = "on"
	}
	run(t, "ip", "netns", "exec", lab.l, "ethtool", "-K", "lab0", "tx", v)
}

// socks are the sockets of one family: ferry's (to catch what falls back
// to user space) and the lab's.
type socks struct {
	listener, relay, relay2 *net.UDPConn // in F
	client, client2         *net.UDPConn // in L
	peer, peer2, unbound    *net.UDPConn // in L
}

func (lab *vethLab) sockets(t *testing.T, fam family) *socks {
	return &socks{
		listener: listen(t, lab.f, fam.listener),
		relay:    listen(t, lab.f, fam.relay),
		relay2:   listen(t, lab.f, fam.relay2),
		client:   listen(t, lab.l, fam.clientAP),
		client2:  listen(t, lab.l, fam.client2AP),
		peer:     listen(t, lab.l, fam.peerAP),
		peer2:    listen(t, lab.l, fam.peer2AP),
		unbound:  listen(t, lab.l, fam.unboundPeer),
	}
}

func (s *socks) ferry() []*net.UDPConn { return []*net.UDPConn{s.listener, s.relay, s.relay2} }

// statsDelta returns after - before, field by field.
func statsDelta(before, after Stats) Stats {
	var d Stats
	bf, af, df := statFields(&before), statFields(&after), statFields(&d)
	for i := range df {
		*df[i] = *af[i] - *bf[i]
	}
	return d
}

func mustStats(t *testing.T, off *Offload) Stats {
	t.Helper()
	s, err := off.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustCounters(t *testing.T, off *Offload, ch Channel) Counters {
	t.Helper()
	c, err := off.Counters(ch)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustPut(t *testing.T, off *Offload, ch Channel) {
	t.Helper()
	if err := off.Put(ch); err != nil {
		t.Fatalf("Put(%+v): %v", ch, err)
	}
}
