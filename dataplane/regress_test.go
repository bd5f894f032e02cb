package dataplane

import (
	"io"
	"net"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/listen"
)

// Regression 2: a wildcard UDP listener answers from the address the
// client sent to (IP_PKTINFO), so TURN over UDP works to every address of
// the host, not only to its primary one.
func TestWildcardAnswersFromDestination(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: true, configure: func(c *config.Config) {
		c.Listen = []string{"udp://0.0.0.0:0", "tcp://127.0.0.1:0"}
	}})
	port := f.udp.(*net.UDPAddr).Port
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, dst := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		to := &net.UDPAddr{IP: net.ParseIP(dst), Port: port}
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := client.WriteTo(req.Raw, to); err != nil {
			t.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		n, from, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("Binding to %v: %v", to, err)
		}
		if from.String() != to.String() {
			t.Fatalf("Binding sent to %v answered from %v", to, from)
		}
		res := &stun.Message{Raw: buf[:n]}
		if err := res.Decode(); err != nil || res.TransactionID != req.TransactionID {
			t.Fatalf("answer %v", err)
		}
	}
	// And a TURN client allocates and relays through the second address.
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	f.udp = &net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: port}
	c := f.client(t, "udp", testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate via 127.0.0.2: %v", err)
	}
	defer rc.Close()
	relayRoundTrips(t, rc, testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr(), 3)
}

// Regression 4: a relay address the host does not have is an error at
// start, naming relay.ip, not a 508 for every Allocate later.
func TestRelayIPNotOnHost(t *testing.T) {
	cfg := config.Default()
	cfg.Listen = []string{"udp://127.0.0.1:0"}
	cfg.Auth.Users = []string{"u=p"}
	ls, _ := cfg.Listeners()
	set, _, err := listen.Open(t.Context(), ls, nil, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := OptionsFrom(cfg, netip.MustParseAddr("192.0.2.55"), netip.Addr{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Credentials, _ = auth.NewSnapshot(cfg.Realm, cfg.Auth.Users, nil)
	o.Loops = 1
	srv, err := New(o, SocketsFrom(set, nil))
	if err == nil {
		_ = srv.Close()
		t.Fatal("server started with a relay address the host lacks")
	}
	if !strings.Contains(err.Error(), "relay.ip") || !strings.Contains(err.Error(), "192.0.2.55") {
		t.Fatalf("error %q does not name relay.ip and the address", err)
	}
}

// Regression 9: a TCP connection that holds no allocation is closed after
// the idle time, also after a Binding request; one with an allocation is
// kept.
func TestIdleConnectionsClosed(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: true, tune: func(o *Options) { o.Engine.ConnectionIdle = time.Second }})
	bindingOnly, err := net.Dial("tcp", f.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer bindingOnly.Close()
	if _, err := bindingOnly.Write(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw); err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", f.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c := f.client(t, "tcp", testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	start := time.Now()
	for _, conn := range []net.Conn{bindingOnly, silent} {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("idle connection not closed by the server: %v", err)
		}
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Fatalf("idle connections closed after %v", took)
	}
	time.Sleep(time.Second)
	relayRoundTrips(t, rc, testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr(), 3)
}

// Close ends every goroutine the server started: loops, listeners,
// connection readers and writers, RFC 6062 copies.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: true, withTLS: true, withDTLS: true})
	for _, tr := range []string{"udp", "tcp", "tls", "dtls"} {
		c := f.client(t, tr, testUser, testPass)
		rc, err := c.Allocate()
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		relayRoundTrips(t, rc, testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr(), 2)
		_ = rc.Close()
		c.Close()
	}
	c := f.client(t, "tcp", testUser, testPass)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	data, err := alloc.DialTCP("tcp4", nil, tcpEchoPeer(t))
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, data, []byte("leak check"))
	_ = data.Close()
	_ = alloc.Close()
	c.Close()
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// The test's own clients and peers live on until its cleanup: look for
	// goroutines running the data plane's code only.
	deadline := time.Now().Add(5 * time.Second)
	for {
		stacks := serverGoroutines()
		if len(stacks) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of the server left after Close:\n%s", len(stacks), strings.Join(stacks, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serverGoroutines returns the stacks of goroutines in the data plane's
// own (non-test) code.
func serverGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			line = strings.TrimSpace(line)
			if strings.Contains(line, "/dataplane/") && !strings.Contains(line, "_test.go") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// RFC 6062 data connections land on any loop; the engine shard that owns
// the CONNECTION-ID takes them over. Several in a row make sure some cross
// loops.
func TestConnectionBindAcrossLoops(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: true, loops: 4})
	c := f.client(t, "tcp", testUser, testPass)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	for i := range 8 {
		data, err := alloc.DialTCP("tcp4", nil, tcpEchoPeer(t))
		if err != nil {
			t.Fatalf("data connection %d: %v", i, err)
		}
		echoThrough(t, data, []byte{byte('a' + i), 'x', 'y'})
		_ = data.Close()
	}
}

// TestRelayPathDoesNotAllocate relays thousands of datagrams both ways
// through a channel (client and echo peer on raw sockets that allocate
// nothing themselves) and counts the process's heap allocations: the data
// plane's receive, engine and send paths allocate nothing per packet.
func TestRelayPathDoesNotAllocate(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: true, loops: 1})
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = peer.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	rc := newRawClient(t, f, "udp")
	pa := peer.LocalAddr().(*net.UDPAddr)
	if res := rc.do(stun.MethodChannelBind, channelNumber(0x4000), peerAddr{pa.IP, pa.Port}); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ChannelBind: %d", errorCode(res))
	}
	client := rc.conn.(*net.UDPConn)
	server := f.udp.(*net.UDPAddr).AddrPort()
	msg := append([]byte{0x40, 0x00, 0x00, 100}, make([]byte, 100)...)
	buf := make([]byte, 2048)
	roundTrip := func() {
		if _, err := client.WriteToUDPAddrPort(msg, server); err != nil {
			t.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, _, err := client.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("echo through the channel: %v", err)
			}
			if n == len(msg) && buf[0] == 0x40 {
				return
			}
		}
	}
	for range 200 {
		roundTrip()
	}
	const n = 3000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		roundTrip()
	}
	runtime.ReadMemStats(&after)
	perPacket := float64(after.Mallocs-before.Mallocs) / (2 * n)
	t.Logf("%d allocations for %d relayed datagrams (%.4f per datagram)", after.Mallocs-before.Mallocs, 2*n, perPacket)
	if perPacket > 0.01 {
		t.Fatalf("%.4f heap allocations per relayed datagram, want none", perPacket)
	}
}

// Regression 7: the allocation lines name the client's real transport,
// and an allocation its client released ends as "client", not "expired".
func TestLogsNameTransportAndEnd(t *testing.T) {
	log, lines := testutil.CaptureLogger(t)
	f := startServer(t, fixtureOpts{allowLoopback: true, withTLS: true, withDTLS: true, log: log})
	for _, tr := range []string{"udp", "tcp", "tls", "dtls"} {
		c := f.client(t, tr, testUser, testPass)
		rc, err := c.Allocate()
		if err != nil {
			t.Fatalf("%s: %v", tr, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
		released := regexp.MustCompile(`msg="allocation deleted" client=\S+ transport=` + tr + ` `)
		testutil.WaitFor(t, 5*time.Second, tr+" allocation released", func() bool {
			return released.MatchString(lines.String())
		})
	}
	out := lines.String()
	for _, tr := range []string{"udp", "tcp", "tls", "dtls"} {
		if !regexp.MustCompile(`msg="allocation created" client=\S+ listener=\S+ transport=` + tr + ` `).MatchString(out) {
			t.Errorf("no allocation line with transport=%s:\n%s", tr, out)
		}
		if !regexp.MustCompile(`msg="allocation deleted" client=\S+ transport=` + tr + ` user=alice relay=\S+ reason=client `).MatchString(out) {
			t.Errorf("no release line with transport=%s reason=client:\n%s", tr, out)
		}
	}
	if st := f.srv.Stats(); st.Ended[engine.EndClient] != 4 || st.Ended[engine.EndExpired] != 0 {
		t.Errorf("ended %v, want 4 by the client", st.Ended)
	}
}
