package browser

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// pages serves testdata/ on 127.0.0.1 and returns its origin.
func pages(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir("testdata")))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestRelayDataChannel: two RTCPeerConnections in one page, relay only, with
// ferry as the only ICE server (credentials from its API, called from the
// page with an API key across origins), exchange data channel messages over
// TURN UDP, TCP and TLS; getStats() shows both selected local candidates are
// relays on ferry's relay address.
func TestRelayDataChannel(t *testing.T) {
	tl := requireTools(t, map[string]string{"test/browser": "playwright-core"})
	origin := pages(t)
	f := startFerry(t, origin)
	tests := []struct {
		transport     string
		relayProtocol string // as getStats() names the client-to-TURN transport
		scheme        string
	}{
		{"udp", "udp", "turn:"},
		{"tcp", "tcp", "turn:"},
		{"tls", "tls", "turns:"},
	}
	for _, tt := range tests {
		t.Run(tt.transport, func(t *testing.T) {
			start := time.Now()
			q := url.Values{"api": {f.API}, "key": {apiKey}, "transport": {tt.transport}}
			var res struct {
				Username string     `json:"username"`
				URLs     []string   `json:"urls"`
				Messages []string   `json:"messages"`
				A        *candidate `json:"a"`
				B        *candidate `json:"b"`
				Errors   []any      `json:"errors"`
			}
			runDriver(t, tl, job{
				Scenario: "page",
				URL:      origin + "/relay.html?" + q.Encode(),
				// The TLS listener's certificate is self-signed.
				ChromiumArgs: []string{"--ignore-certificate-errors"},
			}, &res)
			t.Logf("%s: urls %v, a %+v, b %+v, ICE errors %v", tt.transport, res.URLs, res.A, res.B, res.Errors)
			if len(res.URLs) != 1 || !strings.HasPrefix(res.URLs[0], tt.scheme+"127.0.0.1:") {
				t.Fatalf("the page used %v, want one %s URL from the credentials API", res.URLs, tt.scheme)
			}
			if !strings.HasSuffix(res.Username, ":browser") {
				t.Fatalf("credential username %q does not carry the user the page asked for", res.Username)
			}
			if strings.Join(res.Messages, "|") != "hello from a|hello from b" {
				t.Fatalf("messages %q, want both ways", res.Messages)
			}
			for who, c := range map[string]*candidate{"a": res.A, "b": res.B} {
				f.checkRelayed(t, who, c)
				if c.RelayProtocol != tt.relayProtocol || c.URL != res.URLs[0] {
					t.Fatalf("%s: relay candidate %+v, want relayProtocol %s via %s", who, *c, tt.relayProtocol, res.URLs[0])
				}
			}
			if tt.transport == "udp" {
				// Chromium binds channels for TURN over UDP: in the
				// offload pass the kernel relays them (the first subtest,
				// so nothing else has been relayed yet).
				f.requireOffloaded(t)
			}
			if d := time.Since(start); d > 60*time.Second {
				t.Errorf("took %v, over the 60s bound", d)
			}
		})
	}
	if !strings.Contains(f.Log(), `msg="credentials minted" caller=key:`) {
		t.Fatal("ferry did not log the credentials the pages minted")
	}
}

// TestPeerJSExample runs examples/peerjs as a developer would (npm start:
// its page plus a real PeerServer) with ferry's credentials API open to the
// example's origin without a key, and has two tabs connect relay-only and
// exchange messages both ways through ferry.
func TestPeerJSExample(t *testing.T) {
	tl := requireTools(t, map[string]string{"test/browser": "playwright-core", "examples/peerjs": "peer"})
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	example := testutil.StartProcess(t, "peerjs-example", filepath.Join(root, "examples", "peerjs"), tl.node,
		[]string{"server.mjs"}, []string{"PORT=0", "HOST=127.0.0.1"})
	base := example.WaitOutput(t, regexp.MustCompile(`PeerJS example on (http://127\.0\.0\.1:\d+)/`))[1]
	f := startFerry(t, base, "--http-allow-anonymous-origins")

	var res struct {
		IDA, IDB             string
		ReceivedA, ReceivedB []string
		CandidateA           *candidate `json:"candidateA"`
		CandidateB           *candidate `json:"candidateB"`
		LogA, LogB           string
	}
	runDriver(t, tl, job{Scenario: "peerjs", URL: base + "/?" + url.Values{"ferry": {f.API}}.Encode()}, &res)
	t.Logf("A %s log:\n%s\nB %s log:\n%s", res.IDA, res.LogA, res.IDB, res.LogB)
	if strings.Join(res.ReceivedA, "|") != "hello from B" || strings.Join(res.ReceivedB, "|") != "hello from A" {
		t.Fatalf("A received %q, B received %q; want one message each way", res.ReceivedA, res.ReceivedB)
	}
	f.checkRelayed(t, "peer A", res.CandidateA)
	f.checkRelayed(t, "peer B", res.CandidateB)
	if res.CandidateA.RelayProtocol == "udp" && res.CandidateB.RelayProtocol == "udp" {
		f.requireOffloaded(t)
	}
	if !strings.Contains(f.Log(), `msg="credentials minted" caller=origin:`+base) {
		t.Fatal("ferry did not log the anonymous credentials the example's pages minted")
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("took %v, over the 60s bound", d)
	}
}

// TestExpiredCredentialRefused: a credential past its expiry cannot
// allocate. Chromium reports the ICE server error (icecandidateerror 401)
// and gathers no relay candidate; ferry logs the refusal.
func TestExpiredCredentialRefused(t *testing.T) {
	tl := requireTools(t, map[string]string{"test/browser": "playwright-core"})
	origin := pages(t)
	f := startFerry(t, origin)
	start := time.Now()
	username, password := auth.Mint(secret, "late", -time.Hour, time.Now())
	turnURL := "turn:" + f.UDP + "?transport=udp"
	ice, err := json.Marshal([]creds.ICEServer{{URLs: []string{turnURL}, Username: username, Credential: password}})
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Gathering  string   `json:"gathering"`
		Candidates []string `json:"candidates"`
		Errors     []struct {
			URL       string `json:"url"`
			ErrorCode int    `json:"errorCode"`
			ErrorText string `json:"errorText"`
		} `json:"errors"`
	}
	runDriver(t, tl, job{Scenario: "page", URL: origin + "/expired.html?" + url.Values{"ice": {string(ice)}}.Encode()}, &res)
	t.Logf("gathering %s, candidates %q, errors %+v", res.Gathering, res.Candidates, res.Errors)
	for _, c := range res.Candidates {
		if strings.Contains(c, " typ relay") {
			t.Fatalf("an expired credential got a relay candidate: %s", c)
		}
	}
	if !regexp.MustCompile(`msg="credential refused" username=` + regexp.QuoteMeta(username) + ` reason="credential expired" method=Allocate `).MatchString(f.Log()) {
		t.Fatal("ferry did not log refusing the expired credential")
	}
	got := false
	for _, e := range res.Errors {
		if e.URL == turnURL && e.ErrorCode == 401 {
			got = true
		}
	}
	if !got {
		t.Fatalf("Chromium reported ICE server errors %+v, want errorCode 401 for %s", res.Errors, turnURL)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("took %v, over the 60s bound", d)
	}
}

// TestRedirectOnDrain: two ferry nodes in a cluster on one redis-server;
// node A drains (kept draining by a live allocation). A relay-only call
// whose only TURN server is A gets 300 (Try Alternate) with B's address,
// and Chromium allocates on B and connects through it.
//
// Chromium refuses redirects to loopback addresses, so the test runs
// itself again inside a network namespace of its own where the nodes
// listen on 198.18.20.1 and .2 (a veth pair, both ends inside). The nodes
// share cluster.nonce-secret: libwebrtc takes the NONCE of the 300 to the
// alternate and does not retry an Allocate answered 438.
func TestRedirectOnDrain(t *testing.T) {
	tl := requireTools(t, map[string]string{"test/browser": "playwright-core"})
	if os.Getenv(redirectNSEnv) == "" {
		testutil.RequireNetns(t)
		testutil.RequireTool(t, "redis-server")
		ns := testutil.NewNetns(t, "ferry-redirect-", "ns")
		testutil.MustRun(t, "ip", "-n", ns, "link", "add", "rd0", "type", "veth", "peer", "name", "rd1")
		for _, a := range []string{"198.18.20.1/24", "198.18.20.2/24"} {
			testutil.MustRun(t, "ip", "-n", ns, "addr", "add", a, "dev", "rd0")
		}
		testutil.MustRun(t, "ip", "-n", ns, "link", "set", "rd0", "up")
		testutil.MustRun(t, "ip", "-n", ns, "link", "set", "rd1", "up")
		cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestRedirectOnDrain$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), redirectNSEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in namespace %s:\n%s", ns, out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestRedirectOnDrain") {
			t.Fatalf("the test in the namespace failed: %v", err)
		}
		return
	}
	rs := testutil.StartRedis(t)
	origin := pages(t)
	cluster := func(id string) []string {
		return []string{"--cluster-redis", rs.URL(), "--cluster-node-id", id, "--cluster-key-prefix", "browser:",
			"--cluster-nonce-secret", "browser-cluster-nonce-secret", "--drain-timeout", "60s", "--allowed-peers", "198.18.20.0/24"}
	}
	a := startFerryAt(t, origin, "198.18.20.1", cluster("a")...)
	b := startFerryAt(t, origin, "198.18.20.2", cluster("b")...)
	ready := `ferry_cluster_nodes{state="ready"}`
	testutil.WaitFor(t, 10*time.Second, "both nodes registered", func() bool { return metric(t, a, ready) == 2 })

	// A live allocation keeps A draining.
	live := turnClient(t, a.UDP)
	relay, err := live.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := syscall.Kill(a.proc.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	a.proc.WaitOutput(t, regexp.MustCompile(`draining: refusing new allocations`))
	testutil.WaitFor(t, 5*time.Second, "b to see a draining", func() bool {
		return metric(t, b, `ferry_cluster_nodes{state="draining"}`) == 1
	})
	defer func() {
		if t.Failed() {
			for name, f := range map[string]*ferry{"a": a, "b": b} {
				t.Logf("node %s: redirected %v, created %v", name,
					metric(t, f, `ferry_allocations_refused_total{reason="redirected"}`),
					metric(t, f, `ferry_allocations_created_total{family="ipv4",transport="udp"}`))
			}
		}
	}()

	q := url.Values{"api": {b.API}, "key": {apiKey}, "transport": {"udp"}, "to": {a.UDP}}
	var res struct {
		URLs     []string   `json:"urls"`
		Messages []string   `json:"messages"`
		A        *candidate `json:"a"`
		B        *candidate `json:"b"`
		Errors   []any      `json:"errors"`
	}
	runDriver(t, tl, job{Scenario: "page", URL: origin + "/relay.html?" + q.Encode()}, &res)
	t.Logf("urls %v, a %+v, b %+v, ICE errors %v", res.URLs, res.A, res.B, res.Errors)
	if len(res.URLs) != 1 || res.URLs[0] != "turn:"+a.UDP+"?transport=udp" {
		t.Fatalf("the page used %v, want only node A", res.URLs)
	}
	if strings.Join(res.Messages, "|") != "hello from a|hello from b" {
		t.Fatalf("messages %q, want both ways", res.Messages)
	}
	for who, c := range map[string]*candidate{"a": res.A, "b": res.B} {
		b.checkRelayed(t, who, c) // relayed by node B
	}
	if n := metric(t, a, `ferry_allocations_refused_total{reason="redirected"}`); n < 1 {
		t.Fatalf("node A redirected %v allocations", n)
	}
}

// redirectNSEnv marks TestRedirectOnDrain's run inside its namespace.
const redirectNSEnv = "FERRY_TEST_REDIRECT_NS"

// metric reads one series of f's /metrics, -1 when absent.
func metric(t *testing.T, f *ferry, series string) float64 {
	t.Helper()
	res, err := http.Get(f.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// turnClient is a pion TURN client over UDP with the REST secret's
// credential.
func turnClient(t *testing.T, server string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	user, pass := auth.Mint(secret, "keeper", time.Hour, time.Now())
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: user, Password: pass, Realm: realm, LoggerFactory: testutil.PionLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
