package dataplane

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/admin"
	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/metrics"
)

// opsFixture is a loopback server with its metrics served over HTTP,
// wired as `ferry serve` wires them.
type opsFixture struct {
	*fixture
	metrics *metrics.Metrics
	scrape  string // URL of /metrics
}

func startOpsServer(t *testing.T) *opsFixture {
	t.Helper()
	f := startServer(t, fixtureOpts{allowLoopback: true})
	op := &opsFixture{fixture: f, metrics: metrics.New(metrics.Source{
		Stats: f.srv.Stats, Draining: f.srv.Draining, PeerDenialReasons: f.srv.Shared().PeerDenialReasons(),
	}, testutil.Logger(t))}
	hs := httptest.NewServer(op.metrics.Handler())
	t.Cleanup(hs.Close)
	op.scrape = hs.URL
	return op
}

// samples scrapes /metrics and returns every sample as "name{labels}" ->
// value, labels as Prometheus prints them (sorted by name).
func (op *opsFixture) samples(t *testing.T) map[string]float64 {
	t.Helper()
	res, err := http.Get(op.scrape)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET /metrics: %s\n%s", res.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// countingEcho is a UDP peer that echoes every datagram and counts them.
type countingEcho struct {
	pc          net.PacketConn
	got, gotLen atomic.Uint64
}

func newCountingEcho(t *testing.T) *countingEcho {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	e := &countingEcho{pc: pc}
	go func() {
		buf := make([]byte, 1600)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			e.got.Add(1)
			e.gotLen.Add(uint64(n))
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return e
}

func TestMetricsCountRelayedTraffic(t *testing.T) {
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			op := startOpsServer(t)
			before := op.samples(t)
			for _, name := range []string{
				`ferry_allocations_active{family="ipv6",transport="dtls"}`,
				`ferry_allocations_refused_total{reason="quota"}`,
				`ferry_relay_peer_denials_total{reason="metadata/link-local"}`,
				`ferry_auth_failures_total{method="ChannelBind"}`,
				`ferry_packets_dropped_total{reason="rate_limit"}`,
				`go_goroutines`,
				`process_open_fds`,
			} {
				if v, ok := before[name]; !ok || (v != 0 && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_")) {
					t.Errorf("%s not pre-created at zero (%v, %v)", name, v, ok)
				}
			}

			c := op.client(t, tr, testUser, testPass)
			relayConn, err := c.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer relayConn.Close()
			peer := newCountingEcho(t)
			const n = 50
			var sentBytes, gotBack, gotBytes uint64
			buf := make([]byte, 1600)
			for i := range n {
				msg := make([]byte, 40+i*7)
				sentBytes += uint64(len(msg))
				if _, err := relayConn.WriteTo(msg, peer.pc.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				_ = relayConn.SetReadDeadline(time.Now().Add(2 * time.Second))
				if m, _, err := relayConn.ReadFrom(buf); err == nil {
					gotBack++
					gotBytes += uint64(m)
				}
			}
			// A datagram from a peer without a permission is dropped, not relayed.
			stranger, err := net.ListenPacket("udp4", "127.0.0.2:0")
			if err != nil {
				t.Skipf("127.0.0.2 not usable: %v", err)
			}
			defer stranger.Close()
			relayAddr := relayConn.LocalAddr().(*net.UDPAddr)
			if _, err := stranger.WriteTo([]byte("unsolicited"), relayAddr); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 5*time.Second, "the stranger's datagram counted", func() bool {
				return op.samples(t)[`ferry_packets_dropped_total{reason="policy"}`] == 1
			})

			s := op.samples(t)
			checks := []struct {
				name string
				want float64
			}{
				{`ferry_relay_packets_total{direction="to_peer"}`, float64(peer.got.Load())},
				{`ferry_relay_packets_total{direction="to_peer"}`, n},
				{`ferry_relay_bytes_total{direction="to_peer"}`, float64(sentBytes)},
				{`ferry_relay_bytes_total{direction="to_peer"}`, float64(peer.gotLen.Load())},
				{`ferry_relay_packets_total{direction="from_peer"}`, float64(gotBack)},
				{`ferry_relay_bytes_total{direction="from_peer"}`, float64(gotBytes)},
				{`ferry_allocations_active{family="ipv4",transport="` + tr + `"}`, 1},
				{`ferry_allocations_created_total{family="ipv4",transport="` + tr + `"}`, 1},
				{`ferry_permissions_created_total`, 1},
				{`ferry_permissions_active`, 1},
				{`ferry_channels_created_total`, 1},
				{`ferry_channels_active`, 1},
				{`ferry_packets_dropped_total{reason="policy"}`, 1},
				{`ferry_server_draining`, 0},
			}
			for _, ck := range checks {
				if got := s[ck.name]; got != ck.want {
					t.Errorf("%s = %v, want %v", ck.name, got, ck.want)
				}
			}
			if gotBack < n*9/10 {
				t.Errorf("only %d of %d echoes came back over loopback", gotBack, n)
			}

			// Closing the allocation keeps the totals and counts the end.
			if err := relayConn.Close(); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 5*time.Second, "allocation released", func() bool { return op.srv.AllocationCount() == 0 })
			s2 := op.samples(t)
			for _, name := range []string{`ferry_relay_packets_total{direction="to_peer"}`, `ferry_relay_bytes_total{direction="from_peer"}`} {
				if s2[name] != s[name] {
					t.Errorf("%s went from %v to %v when the allocation closed", name, s[name], s2[name])
				}
			}
			// Released by the client: counted as such (regression 7).
			if s2[`ferry_allocations_ended_total{reason="client"}`] != 1 || s2[`ferry_allocations_active{family="ipv4",transport="`+tr+`"}`] != 0 {
				t.Errorf("after close: ended by client %v active %v", s2[`ferry_allocations_ended_total{reason="client"}`],
					s2[`ferry_allocations_active{family="ipv4",transport="`+tr+`"}`])
			}
		})
	}
}

func TestMetricsCountRefusals(t *testing.T) {
	op := startOpsServer(t)
	delta := func(name string, do func()) float64 {
		t.Helper()
		before := op.samples(t)[name]
		do()
		return op.samples(t)[name] - before
	}

	// One Binding request, counted once.
	conn, to := op.clientConn(t, "udp")
	if d := delta(`ferry_stun_binding_requests_total`, func() {
		roundTrip(t, conn, to, stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint))
	}); d != 1 {
		t.Errorf("binding requests +%v, want +1", d)
	}

	// One Allocate with a wrong password: one auth failure, one refusal.
	wrong := func() {
		rc := &rawClient{t: t, conn: conn, to: to, user: stun.NewUsername(testUser), realm: stun.NewRealm(testRealm)}
		res := roundTrip(t, conn, to, stun.MustBuild(stun.TransactionID,
			stun.NewType(stun.MethodAllocate, stun.ClassRequest), requestedUDP{}, stun.Fingerprint))
		if err := rc.nonce.GetFrom(res); err != nil {
			t.Fatal(err)
		}
		rc.integ = stun.NewLongTermIntegrity(testUser, testRealm, "wrong password")
		if code := errorCode(rc.do(stun.MethodAllocate, requestedUDP{})); code != 401 {
			t.Fatalf("wrong password answered %d, want 401", code)
		}
	}
	before := op.samples(t)
	wrong()
	after := op.samples(t)
	for name, want := range map[string]float64{
		`ferry_auth_failures_total{method="Allocate"}`:   1,
		`ferry_allocations_refused_total{reason="auth"}`: 1,
		`ferry_auth_failures_total{method="Refresh"}`:    0,
	} {
		if d := after[name] - before[name]; d != want {
			t.Errorf("%s +%v, want +%v", name, d, want)
		}
	}

	// A peer refused by policy.
	rc := newRawClient(t, op.fixture, "udp")
	if d := delta(`ferry_relay_peer_denials_total{reason="private"}`, func() {
		if code := errorCode(rc.do(stun.MethodCreatePermission, peerAddr{net.ParseIP("10.1.2.3"), 9})); code != 403 {
			t.Fatalf("private peer answered %d, want 403", code)
		}
	}); d != 1 {
		t.Errorf("peer denials +%v, want +1", d)
	}

	// Draining refuses allocations with 508; the existing one is refreshed.
	op.srv.Drain()
	c := op.client(t, "udp", testUser, testPass)
	if d := delta(`ferry_allocations_refused_total{reason="draining"}`, func() {
		_, err := c.Allocate()
		if code := testutil.TURNCode(err); code != 508 {
			t.Fatalf("allocate while draining: %v (code %d), want 508", err, code)
		}
	}); d != 1 {
		t.Errorf("draining refusals +%v, want +1", d)
	}
	if res := rc.do(stun.MethodRefresh); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("refresh while draining: code %d", errorCode(res))
	}
	if s := op.samples(t); s[`ferry_server_draining`] != 1 {
		t.Errorf("ferry_server_draining = %v", s[`ferry_server_draining`])
	}
}

func TestAdminClosesAllocation(t *testing.T) {
	op := startOpsServer(t)
	const token = "admin-token-0123456789"
	h, err := admin.New(admin.Options{Token: token, Table: op.srv})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(h)
	defer api.Close()
	call := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, api.URL+admin.Prefix+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := api.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	// A raw client to read Refresh answers, a pion client relaying.
	raw := newRawClient(t, op.fixture, "udp")
	c := op.client(t, "tcp", testUser, testPass)
	relayConn, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	peer := newCountingEcho(t)
	relayRoundTrips(t, relayConn, peer.pc.LocalAddr(), 3)

	code, body := call("GET", "allocations")
	relayAddr := relayConn.LocalAddr().String()
	if code != 200 || !strings.Contains(body, `"count": 2`) || !strings.Contains(body, `"relay": "`+relayAddr+`"`) ||
		!strings.Contains(body, `"user": "`+testUser+`"`) || !strings.Contains(body, `"transport": "tcp"`) ||
		!strings.Contains(body, `"to_peer_packets": 3`) {
		t.Fatalf("list: %d\n%s", code, body)
	}

	// Closing the pion client's allocation ends its relay.
	if code, body := call("DELETE", "allocations/"+relayAddr); code != 200 || !strings.Contains(body, `"closed": 1`) {
		t.Fatalf("close: %d %s", code, body)
	}
	if n := op.srv.AllocationCount(); n != 1 {
		t.Fatalf("%d allocations after closing one of two", n)
	}
	got := peer.got.Load()
	_, _ = relayConn.WriteTo([]byte("after close"), peer.pc.LocalAddr())
	time.Sleep(200 * time.Millisecond)
	if peer.got.Load() != got {
		t.Fatal("the peer still receives through a closed allocation")
	}

	// Closing all of the user's: the raw client's Refresh then fails.
	if res := raw.do(stun.MethodRefresh); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("refresh before close: %d", errorCode(res))
	}
	if code, body := call("DELETE", "users/"+testUser+"/allocations"); code != 200 || !strings.Contains(body, `"closed": 1`) {
		t.Fatalf("close user: %d %s", code, body)
	}
	if n := op.srv.AllocationCount(); n != 0 {
		t.Fatalf("%d allocations after closing the user's", n)
	}
	// The client learns at once: its Refresh gets 437, signed (regression
	// 5), so it reallocates instead of waiting for a timeout.
	res := raw.tryRefresh(time.Second)
	if res == nil || errorCode(res) != 437 {
		t.Fatalf("refresh after the allocation was closed: %v, want 437", res)
	}
	if err := raw.integ.Check(res); err != nil {
		t.Fatalf("437 not signed: %v", err)
	}
	if s := op.samples(t); s[`ferry_allocations_ended_total{reason="admin"}`] != 2 {
		t.Fatalf("ended by admin = %v, want 2", s[`ferry_allocations_ended_total{reason="admin"}`])
	}
}

func TestListening(t *testing.T) {
	op := startOpsServer(t)
	if err := op.srv.Listening(); err != nil {
		t.Fatalf("Listening on a fresh server: %v", err)
	}
	_ = op.srv.Close()
	if err := op.srv.Listening(); err == nil {
		t.Fatal("Listening after Close reported no error")
	}
}

// tryRefresh sends one Refresh and returns its response, or nil if none
// arrives within wait.
func (rc *rawClient) tryRefresh(wait time.Duration) *stun.Message {
	req := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest),
		&rc.user, &rc.realm, &rc.nonce, &rc.integ, stun.Fingerprint)
	if _, err := rc.conn.WriteTo(req.Raw, rc.to); err != nil {
		rc.t.Fatal(err)
	}
	_ = rc.conn.SetReadDeadline(time.Now().Add(wait))
	defer func() { _ = rc.conn.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 1600)
	for {
		n, _, err := rc.conn.ReadFrom(buf)
		if err != nil {
			return nil
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if res.Decode() == nil && res.TransactionID == req.TransactionID {
			return res
		}
	}
}
