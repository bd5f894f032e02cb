//go:build linux

package fastpath

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/offload"
)

const (
	realm      = "fastpath"
	user       = "alice"
	password   = "wonderland"
	adminToken = "fastpath-admin-token-0123456789"
	nsPrefix   = "ferry-fastpath-"
	turnPort   = 3478
	mtu        = 1500
)

// ferryBinary builds ./cmd/ferry once; TestMain removes it.
var ferryBinary func() (string, error)

func TestMain(m *testing.M) { os.Exit(testutil.MainWithFerry(m, "fastpath", &ferryBinary)) }

// family is one address family's addresses in the lab: ferry's (listener
// and relay) in namespace F, the others in namespace L.
type family struct {
	name                             string
	ferry, client, peer, peer2, deny netip.Addr
	bits                             int
	ipHeader                         int
}

var families = []family{
	{"ipv4", ip("198.18.0.1"), ip("198.18.0.2"), ip("198.18.0.3"), ip("198.18.0.4"), ip("198.18.0.5"), 24, 20},
	{"ipv6", ip("2001:db8:77::1"), ip("2001:db8:77::2"), ip("2001:db8:77::3"), ip("2001:db8:77::4"), ip("2001:db8:77::5"), 64, 40},
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// listener is ferry's UDP listener of the family.
func (f family) listener() netip.AddrPort { return netip.AddrPortFrom(f.ferry, turnPort) }

// maxFromPeer is the largest peer datagram whose ChannelData (4 bytes
// more) still fits the veth's MTU.
func (f family) maxFromPeer() int { return mtu - f.ipHeader - 8 - 4 }

// lab is ferry with its fast path in namespace F, and namespace L for
// clients and peers, joined by a veth pair (fp0 in F, lab0 in L).
type lab struct {
	t     *testing.T
	mode  string
	f, l  string
	ferry *testutil.Process
	http  *http.Client
}

// newLab builds the namespaces and starts ferry with --relay-offload
// mode on fp0: tc, or xdp (generic XDP on a veth), with IP forwarding on
// in F, which XDP's route lookups need.
func newLab(t *testing.T, mode string) *lab {
	t.Helper()
	testutil.RequireNetns(t)
	testutil.RequireTool(t, "ethtool")
	if err := offload.Supported(); err != nil {
		testutil.Unavailable(t, "BPF: %v", err)
	}
	bin, err := ferryBinary()
	if err != nil {
		t.Fatal(err)
	}
	lb := &lab{t: t, mode: mode, f: testutil.NewNetns(t, nsPrefix, "f"), l: testutil.NewNetns(t, nsPrefix, "l")}
	testutil.MustRun(t, "ip", "link", "add", "fp0", "netns", lb.f, "type", "veth", "peer", "name", "lab0", "netns", lb.l)
	for _, fam := range families {
		add := func(ns, dev string, a netip.Addr) {
			args := []string{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", a, fam.bits), "dev", dev}
			if a.Is6() {
				args = append(args, "nodad")
			}
			testutil.MustRun(t, "ip", args...)
		}
		add(lb.f, "fp0", fam.ferry)
		for _, a := range []netip.Addr{fam.client, fam.peer, fam.peer2, fam.deny} {
			add(lb.l, "lab0", a)
		}
	}
	for _, end := range [][2]string{{lb.f, "fp0"}, {lb.l, "lab0"}} {
		testutil.MustRun(t, "ip", "-n", end[0], "link", "set", end[1], "mtu", strconv.Itoa(mtu), "up")
		// Checksums computed in software: a wrong one is dropped and
		// counted (InCsumErrors) by the receiver.
		testutil.MustRun(t, "ip", "netns", "exec", end[0], "ethtool", "-K", end[1], "tx", "off")
	}
	if mode == "xdp" {
		testutil.MustRun(t, "ip", "netns", "exec", lb.f, "sysctl", "-qw", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1")
	}
	args := []string{"netns", "exec", lb.f, bin, "serve",
		"--listen", "udp://" + families[0].listener().String(),
		"--listen", "udp://" + families[1].listener().String(),
		"--relay-ip", families[0].ferry.String(), "--relay-ip", families[1].ferry.String(),
		"--relay-ports", "40000-40999",
		"--allowed-peers", "198.18.0.0/24", "--allowed-peers", "2001:db8:77::/64",
		"--denied-peers", families[0].deny.String() + "/32", "--denied-peers", families[1].deny.String() + "/128",
		"--user", user + "=" + password, "--realm", realm,
		"--relay-offload", mode,
		"--http-listen", "127.0.0.1:8080", "--http-admin-token", adminToken,
		"--drain-timeout", "2s",
		"--log-level", "debug",
	}
	lb.ferry = testutil.StartProcess(t, "ferry", "", "ip", args, nil)
	lb.ferry.WaitOutput(t, regexp.MustCompile(`msg="ferry ready"`))
	attached := map[string]string{"tc": "tc", "xdp": "xdp-generic"}[mode]
	if !strings.Contains(lb.ferry.Output(), `attached="fp0 (`+attached+`)"`) {
		t.Fatalf("ferry did not attach its fast path to fp0 in %s mode (see its log above)", attached)
	}
	lb.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := testutil.InNetns(lb.f, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	t.Cleanup(lb.http.CloseIdleConnections)
	return lb
}

// metrics scrapes ferry's metrics into series -> value, a series being
// the name with its labels as printed, e.g. ferry_x_total{path="to_peer"}.
func (lb *lab) metrics() map[string]float64 {
	lb.t.Helper()
	resp, err := lb.http.Get("http://127.0.0.1:8080/metrics")
	if err != nil {
		lb.t.Fatalf("scraping ferry: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// delta is what each series of interest grew by between two scrapes.
func delta(before, after map[string]float64, series string) float64 {
	return after[series] - before[series]
}

// cpuTicks is ferry's user plus system CPU time in clock ticks.
func (lb *lab) cpuTicks() int64 {
	lb.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", lb.ferry.Pid()))
	if err != nil {
		lb.t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// admin calls the admin API.
func (lb *lab) admin(method, path string) (int, []byte) {
	lb.t.Helper()
	req, _ := http.NewRequest(method, "http://127.0.0.1:8080/v1/admin/"+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := lb.http.Do(req)
	if err != nil {
		lb.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// allocation returns the admin API's view of the allocation of relay.
func (lb *lab) allocation(relay netip.AddrPort) map[string]any {
	lb.t.Helper()
	code, body := lb.admin("GET", "allocations")
	if code != 200 {
		lb.t.Fatalf("GET allocations: %d %s", code, body)
	}
	var list struct {
		Allocations []map[string]any `json:"allocations"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		lb.t.Fatal(err)
	}
	for _, a := range list.Allocations {
		if a["relay"] == relay.String() {
			return a
		}
	}
	lb.t.Fatalf("no allocation %v in %s", relay, body)
	return nil
}

// peer is a UDP socket in L.
func (lb *lab) peer(t *testing.T, a netip.Addr) *net.UDPConn {
	t.Helper()
	return testutil.ListenUDPIn(t, lb.l, netip.AddrPortFrom(a, 0))
}

// client is a TURN client over UDP in L, written with pion/stun so the
// tests decide exactly what goes on the wire.
type client struct {
	t     *testing.T
	c     *net.UDPConn
	srv   netip.AddrPort
	nonce stun.Nonce
	relay netip.AddrPort
}

// newClient allocates a relay of fam's family for a client at fam.client.
func (lb *lab) newClient(t *testing.T, fam family, opts ...func(*net.UDPConn)) *client {
	t.Helper()
	c := testutil.ListenUDPIn(t, lb.l, netip.AddrPortFrom(fam.client, 0))
	for _, o := range opts {
		o(c)
	}
	cl := &client{t: t, c: c, srv: fam.listener()}
	family := byte(0x01)
	if fam.ferry.Is6() {
		family = 0x02
	}
	attrs := []stun.Setter{rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}},
		rawAttr{stun.AttrRequestedAddressFamily, []byte{family, 0, 0, 0}}}
	res := cl.request(stun.MethodAllocate, false, attrs...)
	if err := cl.nonce.GetFrom(res); err != nil || errorCode(res) != 401 {
		t.Fatalf("allocate challenge: code %d, %v", errorCode(res), err)
	}
	res = cl.request(stun.MethodAllocate, true, attrs...)
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("allocate: code %d", errorCode(res))
	}
	var relay stun.XORMappedAddress
	if err := relay.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		t.Fatal(err)
	}
	a, _ := netip.AddrFromSlice(relay.IP)
	cl.relay = netip.AddrPortFrom(a.Unmap(), uint16(relay.Port))
	if cl.relay.Addr() != fam.ferry {
		t.Fatalf("relay %v, want one on %v", cl.relay, fam.ferry)
	}
	return cl
}

type rawAttr struct {
	t stun.AttrType
	v []byte
}

func (r rawAttr) AddTo(m *stun.Message) error {
	m.Add(r.t, r.v)
	return nil
}

type peerAttr netip.AddrPort

func (p peerAttr) AddTo(m *stun.Message) error {
	a := netip.AddrPort(p)
	return stun.XORMappedAddress{IP: a.Addr().AsSlice(), Port: int(a.Port())}.AddToAs(m, stun.AttrXORPeerAddress)
}

func errorCode(m *stun.Message) int {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return 0
	}
	return int(ec.Code)
}

// request sends a request (authenticated with the long-term credential
// when auth) and returns its response, retransmitting on silence; it
// skips other datagrams (ChannelData, indications) meanwhile.
func (cl *client) request(method stun.Method, auth bool, attrs ...stun.Setter) *stun.Message {
	cl.t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
	if auth {
		setters = append(setters, stun.NewUsername(user), stun.NewRealm(realm), &cl.nonce,
			stun.NewLongTermIntegrity(user, realm, password))
	}
	req := stun.MustBuild(append(setters, stun.Fingerprint)...)
	buf := make([]byte, 2048)
	for range 4 {
		if _, err := cl.c.WriteToUDPAddrPort(req.Raw, cl.srv); err != nil {
			cl.t.Fatal(err)
		}
		deadline := time.Now().Add(time.Second)
		for {
			_ = cl.c.SetReadDeadline(deadline)
			n, _, err := cl.c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if !stun.IsMessage(buf[:n]) {
				continue
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == req.TransactionID {
				return res
			}
		}
	}
	cl.t.Fatalf("%v: no response from %v", method, cl.srv)
	return nil
}

// ok fails the test unless the request succeeded.
func (cl *client) ok(what string, res *stun.Message) {
	cl.t.Helper()
	if res.Type.Class != stun.ClassSuccessResponse {
		cl.t.Fatalf("%s: error %d", what, errorCode(res))
	}
}

func (cl *client) permit(peers ...netip.AddrPort) *stun.Message {
	attrs := make([]stun.Setter, 0, len(peers))
	for _, p := range peers {
		attrs = append(attrs, peerAttr(p))
	}
	return cl.request(stun.MethodCreatePermission, true, attrs...)
}

func (cl *client) bind(n uint16, peer netip.AddrPort) *stun.Message {
	return cl.request(stun.MethodChannelBind, true, peerAttr(peer), rawAttr{stun.AttrChannelNumber, []byte{byte(n >> 8), byte(n), 0, 0}})
}

// channelData sends data on channel n, padded to 4 bytes when pad.
func (cl *client) channelData(n uint16, data []byte, pad bool) {
	cl.t.Helper()
	cl.sendRaw(channelData(n, data, pad))
}

func channelData(n uint16, data []byte, pad bool) []byte {
	b := append([]byte{byte(n >> 8), byte(n), byte(len(data) >> 8), byte(len(data))}, data...)
	for pad && len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (cl *client) sendRaw(b []byte) {
	cl.t.Helper()
	if _, err := cl.c.WriteToUDPAddrPort(b, cl.srv); err != nil {
		cl.t.Fatal(err)
	}
}

// sendIndication sends data to peer in a Send indication.
func (cl *client) sendIndication(peer netip.AddrPort, data []byte) {
	cl.t.Helper()
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		peerAttr(peer), rawAttr{stun.AttrData, data}, stun.Fingerprint)
	cl.sendRaw(m.Raw)
}

// received is one datagram the client got from ferry: ChannelData, or a
// Data indication (channel 0, with its peer).
type received struct {
	from    netip.AddrPort
	channel uint16
	peer    netip.AddrPort
	data    []byte
}

// next returns the next ChannelData or Data indication within d.
func (cl *client) next(d time.Duration) (received, bool) {
	buf := make([]byte, 65536)
	deadline := time.Now().Add(d)
	for {
		_ = cl.c.SetReadDeadline(deadline)
		n, from, err := cl.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return received{}, false
		}
		b := buf[:n]
		if len(b) >= 4 && b[0]&0xC0 == 0x40 {
			l := int(b[2])<<8 | int(b[3])
			if 4+l > len(b) {
				cl.t.Errorf("ChannelData length %d past its %d-byte datagram", l, len(b))
				continue
			}
			return received{from: from, channel: uint16(b[0])<<8 | uint16(b[1]), data: append([]byte(nil), b[4:4+l]...)}, true
		}
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() != nil || m.Type != stun.NewType(stun.MethodData, stun.ClassIndication) {
			continue
		}
		var p stun.XORMappedAddress
		var data stun.RawAttribute
		if p.GetFromAs(m, stun.AttrXORPeerAddress) != nil {
			continue
		}
		if v, err := m.Get(stun.AttrData); err == nil {
			data.Value = v
		}
		a, _ := netip.AddrFromSlice(p.IP)
		return received{from: from, peer: netip.AddrPortFrom(a.Unmap(), uint16(p.Port)), data: data.Value}, true
	}
}

// expectChannel reads ChannelData on channel n carrying want from the
// listener.
func (cl *client) expectChannel(what string, n uint16, want []byte) {
	cl.t.Helper()
	r, ok := cl.next(2 * time.Second)
	switch {
	case !ok:
		cl.t.Fatalf("%s: nothing reached the client", what)
	case r.channel != n || r.from != cl.srv:
		cl.t.Fatalf("%s: got channel %#x from %v, want %#x from %v", what, r.channel, r.from, n, cl.srv)
	case string(r.data) != string(want):
		cl.t.Fatalf("%s: got %d bytes %x..., want %d bytes %x...", what, len(r.data), head(r.data), len(want), head(want))
	}
}

// expectNothing fails if the client gets anything for a moment.
func (cl *client) expectNothing(what string) {
	cl.t.Helper()
	if r, ok := cl.next(300 * time.Millisecond); ok {
		cl.t.Fatalf("%s: the client got %d bytes on channel %#x", what, len(r.data), r.channel)
	}
}

// expectPeer reads want at peer, sent from relay.
func expectPeer(t *testing.T, what string, peer *net.UDPConn, relay netip.AddrPort, want []byte) {
	t.Helper()
	buf := make([]byte, 65536)
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("%s: nothing reached the peer: %v", what, err)
	}
	if from != relay {
		t.Fatalf("%s: the peer got a datagram from %v, want the relay %v", what, from, relay)
	}
	if string(buf[:n]) != string(want) {
		t.Fatalf("%s: the peer got %d bytes %x..., want %d bytes %x...", what, n, head(buf[:n]), len(want), head(want))
	}
}

// expectPeerNothing fails if peer gets anything for a moment.
func expectPeerNothing(t *testing.T, what string, peer *net.UDPConn) {
	t.Helper()
	buf := make([]byte, 65536)
	_ = peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, from, err := peer.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("%s: the peer got %d bytes from %v", what, n, from)
	}
}

func sendTo(t *testing.T, c *net.UDPConn, b []byte, to netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

func addrOf(c *net.UDPConn) netip.AddrPort {
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// payload is n random bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func head(b []byte) []byte { return b[:min(len(b), 8)] }
