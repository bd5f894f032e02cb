package cli

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/testpage"
)

// TestServeTestPage: `ferry serve` serves the test page on http.listen
// beside the other endpoints, and /v1/status reports the live allocation,
// the traffic it relayed and the drain, with none of the configuration's
// secrets and no client address.
func TestServeTestPage(t *testing.T) {
	const (
		restSecret = "rest-secret-not-for-status"
		key        = "api-key-not-for-status-0123"
		origin     = "https://app.example.com"
	)
	sf := startServingYAML(t, servingYAML(10*time.Second, "  secrets: ["+restSecret+"]\n",
		"  api-keys: ["+key+"]\n  cors-origins: ["+origin+"]\n"))

	code, page := sf.get(t, "/")
	if code != http.StatusOK || !strings.Contains(page, `<script src="/ui/app.js"`) {
		t.Fatalf("GET /: %d %.200q", code, page)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/ui/app.js": 200, "/nothing": 404} {
		if code, _ := sf.get(t, path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	for _, path := range []string{"/", "/healthz", "/v1/status"} {
		res, err := http.Post(sf.http+path, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d, want 405", path, res.StatusCode)
		}
	}

	// One allocation relays a datagram to an echo peer and back.
	peer := testutil.EchoPeer(t, "udp4", "127.0.0.1:0")
	c := sf.turnClient(t)
	client, err := c.SendBindingRequest()
	if err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if err := relayEcho(relay, peer.LocalAddr(), "hello through ferry"); err != nil {
		t.Fatal(err)
	}

	status := func() (testpage.Status, string) {
		t.Helper()
		code, body := sf.get(t, testpage.StatusPath)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", testpage.StatusPath, code, body)
		}
		var st testpage.Status
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return st, body
	}
	st, body := status()
	t.Logf("status: %s", body)
	if st.Version != Version() || st.Realm != drainRealm || st.Draining {
		t.Fatalf("status %+v: want version %q, realm %q, not draining", st, Version(), drainRealm)
	}
	if st.Allocations != 1 || st.Relayed.ToPeerPackets < 1 || st.Relayed.FromPeerPackets < 1 ||
		st.Relayed.Bytes < 2*uint64(len("hello through ferry")) {
		t.Fatalf("status %+v: want 1 allocation and the echo relayed both ways", st)
	}
	udp := regexp.MustCompile(`^turn:127\.0\.0\.1:\d+\?transport=udp$`)
	if len(st.URLs) != 3 || st.URLs[0] != "stun:"+sf.udp || !udp.MatchString(st.URLs[1]) ||
		!strings.HasSuffix(st.URLs[2], "?transport=tcp") {
		t.Fatalf("status URLs %q, want stun:, turn: UDP and turn: TCP of the listeners", st.URLs)
	}
	if d := time.Since(st.Time); d < -time.Minute || d > time.Minute {
		t.Fatalf("status time %v is not now", st.Time)
	}
	for _, secret := range []string{restSecret, key, adminToken, drainUser, drainPass, client.String(), relay.LocalAddr().String(), peer.LocalAddr().String()} {
		if strings.Contains(body, secret) {
			t.Fatalf("status shows %q: %s", secret, body)
		}
	}

	// SIGTERM drains while the allocation lives.
	sf.te.sigs <- syscall.SIGTERM
	testutil.WaitFor(t, 5*time.Second, "status to report draining", func() bool {
		st, _ := status()
		return st.Draining
	})
}

// TestServeTestPageOff: http.test-page false serves neither the page nor
// /v1/status; health and metrics stay.
func TestServeTestPageOff(t *testing.T) {
	sf := startServingYAML(t, servingYAML(10*time.Second, "", "  test-page: false\n"))
	for path, want := range map[string]int{"/": 404, "/ui/app.js": 404, "/v1/status": 404, "/healthz": 200, "/metrics": 200} {
		if code, _ := sf.get(t, path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
}
