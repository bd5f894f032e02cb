package browser

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/testpage"
)

// testPageJob is how driver.mjs's testpage scenario fills the page's form.
type testPageJob struct {
	Source     string   `json:"source"` // api, json or manual
	Server     string   `json:"server,omitempty"`
	APIKey     string   `json:"apiKey,omitempty"`
	ICEJSON    string   `json:"iceJSON,omitempty"`
	URLs       []string `json:"urls,omitempty"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
	// WaitChart waits until the status chart has a traffic rate.
	WaitChart bool `json:"waitChart,omitempty"`
}

// shown is a verdict as the page's data attributes and text show it.
type shown struct {
	Status     string `json:"status"`
	Cause      string `json:"cause"`
	URL        string `json:"url"`
	Kind       string `json:"kind"`
	RTTMs      string `json:"rttMs"`
	Throughput string `json:"throughput"`
	Points     string `json:"points"`
	Text       string `json:"text"`
}

// pageCandidate is a candidate as the page lists it.
type pageCandidate struct {
	Type          string `json:"type"`
	Address       string `json:"address"`
	Port          int    `json:"port"`
	Protocol      string `json:"protocol"`
	RelayProtocol string `json:"relayProtocol"`
}

// testPageResult is what the testpage scenario returns.
type testPageResult struct {
	Credential    shown    `json:"credential"`
	Rows          []shown  `json:"rows"`
	Relay         shown    `json:"relay"`
	Working       string   `json:"working"`
	CopyDisabled  bool     `json:"copyDisabled"`
	Status        shown    `json:"status"`
	StatusNote    string   `json:"statusNote"`
	Chart         shown    `json:"chart"`
	CSPViolations []string `json:"cspViolations"`
	CopyStatus    string   `json:"copyStatus"`
	Clipboard     string   `json:"clipboard"`
	// Result is the page's window.testpage.result.
	Result struct {
		Rows []struct {
			URL        string          `json:"url"`
			Status     string          `json:"status"`
			Cause      string          `json:"cause"`
			Candidates []pageCandidate `json:"candidates"`
			Errors     []struct {
				ErrorCode int    `json:"errorCode"`
				ErrorText string `json:"errorText"`
			} `json:"errors"`
			FirstMs *float64 `json:"firstMs"`
		} `json:"rows"`
		Relay struct {
			Status   string         `json:"status"`
			RTTMs    float64        `json:"rttMs"`
			Received int64          `json:"received"`
			A        *pageCandidate `json:"a"`
			B        *pageCandidate `json:"b"`
		} `json:"relay"`
	} `json:"result"`
}

// row returns the page's row for u.
func (r *testPageResult) row(t *testing.T, u string) shown {
	t.Helper()
	for _, row := range r.Rows {
		if row.URL == u {
			return row
		}
	}
	t.Fatalf("the page shows no row for %s: %+v", u, r.Rows)
	return shown{}
}

// artifacts is where screenshots go: $FERRY_ARTIFACTS if set, else a
// directory of the test's own.
func artifacts(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("FERRY_ARTIFACTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// checkScreenshot fails unless path is a PNG of some size.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 20<<10 {
		t.Fatalf("screenshot %s: %d bytes, not a PNG of the page", path, len(b))
	}
	t.Logf("screenshot %s (%d KiB)", path, len(b)>>10)
}

// TestTestPage opens ferry's own test page (GET / on http.listen) in
// Chromium with ferry's UDP, TCP and TLS listeners and its credentials API
// open to the page's origin without a key, runs every check and reads the
// verdicts the page shows; then a pasted iceServers list with a wrong
// credential and two stopped listeners, and the page served from an origin
// ferry does not allow.
//
// On loopback Chromium does report a server reflexive candidate for the
// STUN URL (127.0.0.1, the address ferry saw) although that is the
// address of its own socket: with host candidates hidden behind mDNS names
// libwebrtc keeps a srflx candidate equal to the local address rather than
// dropping it as redundant. So the STUN row must show srflx.
func TestTestPage(t *testing.T) {
	tl := requireTools(t, map[string]string{"test/browser": "playwright-core"})
	start := time.Now()
	// The page is same-origin with the API, but Chromium sends Origin on a
	// POST all the same: ferry's own origin must be allowed.
	port := strconv.Itoa(testutil.FreePort(t))
	self := "http://127.0.0.1:" + port
	f := startFerry(t, self, "--http-listen", "127.0.0.1:"+port, "--http-allow-anonymous-origins")
	if f.API != self {
		t.Fatalf("ferry's HTTP listener is %s, want %s", f.API, self)
	}
	dir := artifacts(t)
	// The TLS listener's certificate is self-signed.
	chromiumArgs := []string{"--ignore-certificate-errors"}

	t.Run("api", func(t *testing.T) {
		shot := filepath.Join(dir, "testpage.png")
		var res testPageResult
		runDriver(t, tl, job{Scenario: "testpage", URL: self + "/", ChromiumArgs: chromiumArgs, Screenshot: shot,
			TestPage: &testPageJob{Source: "api", WaitChart: true}}, &res)
		t.Logf("credential: %+v\nrows: %+v\nrelay: %+v\nchart: %+v", res.Credential, res.Rows, res.Relay, res.Chart)
		if res.Credential.Status != "ok" {
			t.Fatalf("credential %+v", res.Credential)
		}
		if len(res.CSPViolations) > 0 {
			t.Fatalf("the page broke its own CSP: %q", res.CSPViolations)
		}
		tcp := regexp.MustCompile(`^turn:127\.0\.0\.1:\d+\?transport=tcp$`)
		tls := regexp.MustCompile(`^turns:127\.0\.0\.1:\d+\?transport=tcp$`)
		want := map[string]string{ // URL: how the relay candidate reaches ferry
			"turn:" + f.UDP + "?transport=udp": "udp",
		}
		for _, r := range res.Rows {
			if tcp.MatchString(r.URL) {
				want[r.URL] = "tcp"
			} else if tls.MatchString(r.URL) {
				want[r.URL] = "tls"
			}
		}
		stun := "stun:" + f.UDP
		if len(res.Rows) != 4 || len(want) != 3 {
			t.Fatalf("rows %+v, want stun:, turn: UDP, turn: TCP and turns: of ferry", res.Rows)
		}
		for _, r := range res.Rows {
			if r.Status != "ok" || r.Cause != "" {
				t.Errorf("row %s: %s %q: %s", r.URL, r.Status, r.Cause, r.Text)
			}
		}
		for _, r := range res.Result.Rows {
			var found bool
			for _, c := range r.Candidates {
				switch {
				case r.URL == stun:
					found = found || c.Type == "srflx"
				case c.Type == "relay":
					if c.Address != f.IP || c.Port < f.RelayLo || c.Port > f.RelayHi || c.RelayProtocol != want[r.URL] {
						t.Errorf("%s: relay candidate %+v, want %s:%d-%d over %s", r.URL, c, f.IP, f.RelayLo, f.RelayHi, want[r.URL])
					}
					found = true
				}
			}
			if !found || r.FirstMs == nil {
				t.Errorf("%s: candidates %+v, no %s", r.URL, r.Candidates, map[bool]string{true: "srflx", false: "relay"}[r.URL == stun])
			}
		}

		if res.Relay.Status != "ok" || !strings.HasPrefix(res.Relay.URL, "turn") {
			t.Fatalf("relay data channel: %+v", res.Relay)
		}
		rtt, _ := strconv.ParseFloat(res.Relay.RTTMs, 64)
		bps, _ := strconv.ParseFloat(res.Relay.Throughput, 64)
		if rtt <= 0 || bps <= 0 {
			t.Fatalf("relay data channel: RTT %q ms, throughput %q B/s; want both > 0", res.Relay.RTTMs, res.Relay.Throughput)
		}
		for who, c := range map[string]*pageCandidate{"a": res.Result.Relay.A, "b": res.Result.Relay.B} {
			if c == nil {
				t.Fatalf("%s: no selected candidate", who)
			}
			f.checkRelayed(t, who, &candidate{CandidateType: c.Type, Address: c.Address, Port: c.Port, RelayProtocol: c.RelayProtocol})
		}

		var working []creds.ICEServer
		if err := json.Unmarshal([]byte(res.Working), &working); err != nil {
			t.Fatalf("working servers %q: %v", res.Working, err)
		}
		var urls []string
		for _, s := range working {
			urls = append(urls, s.URLs...)
			if strings.HasPrefix(s.URLs[0], "turn") && (s.Username == "" || s.Credential == "") {
				t.Errorf("working TURN servers %+v without their credential", s)
			}
		}
		if len(urls) != 4 || res.CopyDisabled {
			t.Fatalf("working servers %q (copy button disabled %v), want all four URLs", urls, res.CopyDisabled)
		}
		if res.CopyStatus != "copied" || res.Clipboard != res.Working {
			t.Fatalf("copy button: %q, clipboard %q, want the working servers", res.CopyStatus, res.Clipboard)
		}

		// The status panel read /v1/status, and its counters have the
		// traffic the page relayed.
		if res.Status.Status != "ok" || !strings.Contains(res.Status.Text, realm) || res.StatusNote != "" {
			t.Fatalf("status panel %+v, note %q", res.Status, res.StatusNote)
		}
		if n, _ := strconv.Atoi(res.Chart.Points); n < 2 {
			t.Fatalf("chart %+v, want at least two rates", res.Chart)
		}
		st := status(t, f)
		if st.Relayed.Bytes < uint64(res.Result.Relay.Received) || st.Realm != realm || len(st.URLs) != 4 {
			t.Fatalf("status %+v: want the %d bytes the page received relayed", st, res.Result.Relay.Received)
		}
		if !strings.Contains(f.Log(), `msg="credentials minted" caller=origin:`+self) {
			t.Fatal("ferry did not log the credential the page minted")
		}
		checkScreenshot(t, shot)
	})

	t.Run("failures", func(t *testing.T) {
		user, _ := auth.Mint(secret, "testpage", time.Hour, time.Now())
		stopped := strconv.Itoa(testutil.FreePort(t)) // nothing listens there
		wrong := "turn:" + f.UDP + "?transport=udp"
		stoppedUDP := "turn:127.0.0.1:" + stopped + "?transport=udp"
		stoppedTCP := "turn:127.0.0.1:" + stopped + "?transport=tcp"
		ice, err := json.Marshal([]creds.ICEServer{
			{URLs: []string{wrong}, Username: user, Credential: "not-the-credential"},
			{URLs: []string{stoppedUDP, stoppedTCP}, Username: user, Credential: testutil.RESTPassword(secret, user)},
		})
		if err != nil {
			t.Fatal(err)
		}
		shot := filepath.Join(dir, "testpage-failures.png")
		var res testPageResult
		runDriver(t, tl, job{Scenario: "testpage", URL: self + "/", ChromiumArgs: chromiumArgs, Screenshot: shot,
			TestPage: &testPageJob{Source: "json", ICEJSON: string(ice)}}, &res)
		t.Logf("credential: %+v\nrows: %+v\nrelay: %+v", res.Credential, res.Rows, res.Relay)
		if res.Credential.Status != "ok" || len(res.Rows) != 3 {
			t.Fatalf("credential %+v, rows %+v: want the three pasted URLs", res.Credential, res.Rows)
		}
		if r := res.row(t, wrong); r.Status != "fail" || r.Cause != "auth" || !strings.Contains(r.Text, "401") {
			t.Errorf("wrong credential: row %+v, want cause auth (401)", r)
		}
		// Over UDP nothing answers (Chromium retransmits for longer than
		// the page's 8 s, so: timeout); over TCP the connection is refused
		// at once (701, unreachable).
		if r := res.row(t, stoppedUDP); r.Status != "fail" || (r.Cause != "timeout" && r.Cause != "unreachable") {
			t.Errorf("stopped UDP listener: row %+v, want cause timeout (or unreachable)", r)
		}
		if r := res.row(t, stoppedTCP); r.Status != "fail" || (r.Cause != "unreachable" && r.Cause != "timeout") {
			t.Errorf("stopped TCP listener: row %+v, want cause unreachable or timeout", r)
		}
		if res.Relay.Status != "fail" || res.Relay.Cause != "no-turn" || !res.CopyDisabled || strings.TrimSpace(res.Working) != "[]" {
			t.Errorf("relay %+v, working %q, copy disabled %v: want nothing to relay through or copy", res.Relay, res.Working, res.CopyDisabled)
		}
		if !strings.Contains(f.Log(), `msg="credential refused" username=`+user) {
			t.Error("ferry did not log refusing the wrong credential")
		}
		checkScreenshot(t, shot)
	})

	t.Run("refused-origin", func(t *testing.T) {
		// The same page, served by another origin that ferry's
		// http.cors-origins does not list, with a valid API key.
		other := httptest.NewServer(http.FileServer(http.FS(testpage.Files())))
		defer other.Close()
		shot := filepath.Join(dir, "testpage-origin.png")
		var res testPageResult
		runDriver(t, tl, job{Scenario: "testpage", URL: other.URL + "/ui/?" + url.Values{"server": {self}}.Encode(), Screenshot: shot,
			TestPage: &testPageJob{Source: "api", APIKey: apiKey}}, &res)
		t.Logf("credential: %+v, status note %q", res.Credential, res.StatusNote)
		c := res.Credential
		if c.Status != "fail" || c.Cause != "origin" || !strings.Contains(c.Text, "http.cors-origins") || !strings.Contains(c.Text, other.URL) {
			t.Fatalf("credential %+v: want cause origin naming %s and http.cors-origins", c, other.URL)
		}
		if len(res.Rows) != 0 || res.Status.Status != "fail" || res.StatusNote == "" {
			t.Fatalf("rows %+v, status %+v %q: want no test and no status from another origin", res.Rows, res.Status, res.StatusNote)
		}
		if !regexp.MustCompile(`origin not allowed.* origin=` + regexp.QuoteMeta(other.URL)).MatchString(f.Log()) {
			t.Fatal("ferry did not log refusing the other origin")
		}
		checkScreenshot(t, shot)
	})

	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("took %v, over the 60s bound", d)
	}
}

// status reads f's /v1/status.
func status(t *testing.T, f *ferry) testpage.Status {
	t.Helper()
	res, err := http.Get(f.API + testpage.StatusPath)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var st testpage.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return st
}
