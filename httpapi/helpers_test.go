package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/internal/stunwire"
	"github.com/ferryrtc/ferry/internal/testutil"
)

const (
	testRealm  = "ferry.test"
	testSecret = "first-secret"
	testKey    = "key-0123456789abcdef"
	otherKey   = "key-fedcba9876543210"
	testOrigin = "https://app.example.com"
	testHost   = "turn.example.com"
)

// t0 is the fixed clock of tests that need none running.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testHTTP is the http.* config every test starts from: one API key, one
// allowed origin, generous limits.
func testHTTP() config.HTTP {
	return config.HTTP{
		APIKeys:     []string{testKey},
		CORSOrigins: []string{testOrigin},
		Rate:        6000, Burst: 1000,
		IPRate: 6000, IPBurst: 1000,
	}
}

var testListeners = []config.Listener{
	{Transport: config.UDP, Addr: netip.MustParseAddrPort("0.0.0.0:3478")},
	{Transport: config.TCP, Addr: netip.MustParseAddrPort("0.0.0.0:3478")},
	{Transport: config.TLSt, Addr: netip.MustParseAddrPort("0.0.0.0:5349")},
}

// fixture is a credentials API over a credential Store.
type fixture struct {
	api   *API
	authn *auth.Store
	log   *testutil.LogWriter
}

// newFixture builds the API from h (mutated by mutate, if any) with
// auth.max-ttl maxTTL and the REST secrets, on clock now (nil: time.Now).
func newFixture(t testing.TB, mutate func(*config.HTTP), maxTTL time.Duration, secrets []string, now func() time.Time) *fixture {
	t.Helper()
	h := testHTTP()
	if mutate != nil {
		mutate(&h)
	}
	snap, err := auth.NewSnapshot(testRealm, nil, secrets)
	if err != nil {
		t.Fatal(err)
	}
	log, w := testutil.CaptureLogger(t)
	authn := auth.NewStore(snap)
	pol, err := NewPolicy(h, maxTTL)
	if err != nil {
		t.Fatal(err)
	}
	api, err := New(Options{Credentials: authn.Snapshot, Host: testHost, Listeners: testListeners, Log: log, Now: now}, pol)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{api: api, authn: authn, log: w}
}

// call describes one request.
type call struct {
	method, target string
	body           string
	contentType    string
	key            string // Authorization: Bearer key, unless authz is set
	authz          string
	origin         string
	remote         string
	header         map[string]string
}

func (c call) do(t testing.TB, h http.Handler) *httptest.ResponseRecorder {
	t.Helper()
	method, target := c.method, c.target
	if method == "" {
		method = http.MethodPost
	}
	if target == "" {
		target = Path
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	r := httptest.NewRequest(method, target, body)
	if c.contentType != "" {
		r.Header.Set("Content-Type", c.contentType)
	}
	switch {
	case c.authz != "":
		r.Header.Set("Authorization", c.authz)
	case c.key != "":
		r.Header.Set("Authorization", "Bearer "+c.key)
	}
	if c.origin != "" {
		r.Header.Set("Origin", c.origin)
	}
	if c.remote != "" {
		r.RemoteAddr = c.remote
	}
	for k, v := range c.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func decodeCredential(t testing.TB, w *httptest.ResponseRecorder) creds.Credential {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var c creds.Credential
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
		t.Fatalf("decoding %s: %v", w.Body, err)
	}
	return c
}

func decodeError(t testing.TB, w *httptest.ResponseRecorder) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", w.Body, err)
	}
	if e.Error == "" {
		t.Fatalf("error body %q has no error message", w.Body)
	}
	return e
}

// accepts reports whether the credentials in force accept an Allocate
// request signed with the credential, checked as the engine checks it: one
// of the user name's keys verifies the MESSAGE-INTEGRITY.
func accepts(t testing.TB, authn *auth.Store, username, password string) bool {
	t.Helper()
	m, err := stun.Build(stun.TransactionID,
		stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername(username),
		stun.NewRealm(testRealm),
		stun.NewNonce("nonce-1"),
		stun.NewLongTermIntegrity(username, testRealm, password),
		stun.Fingerprint,
	)
	if err != nil {
		t.Fatal(err)
	}
	cred, _, ok := authn.Snapshot().Credential(username)
	if !ok {
		return false
	}
	var msg stunwire.Message
	if err := stunwire.Parse(m.Raw, &msg); err != nil {
		t.Fatal(err)
	}
	mac := stunwire.NewMAC()
	for _, k := range cred.Keys {
		if mac.Check(&msg, k) {
			return true
		}
	}
	return false
}
