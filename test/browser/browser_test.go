package browser

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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
