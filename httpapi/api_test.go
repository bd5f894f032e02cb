package httpapi

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/internal/testutil"
)

func TestMintTTL(t *testing.T) {
	tests := []struct {
		name    string
		maxTTL  time.Duration
		c       call
		wantTTL int64
	}{
		{"default is one hour", 24 * time.Hour, call{}, 3600},
		{"default capped by max-ttl", 30 * time.Minute, call{}, 1800},
		{"query seconds", 24 * time.Hour, call{target: Path + "?ttl=60"}, 60},
		{"query duration", 24 * time.Hour, call{target: Path + "?ttl=2h"}, 7200},
		{"query capped", 24 * time.Hour, call{target: Path + "?ttl=999999999999"}, 86400},
		{"duration capped", 10 * time.Minute, call{target: Path + "?ttl=1h"}, 600},
		{"json number", 24 * time.Hour, call{body: `{"ttl": 120}`, contentType: "application/json"}, 120},
		{"json string", 24 * time.Hour, call{body: `{"ttl": "90s"}`, contentType: "application/json; charset=utf-8"}, 90},
		{"json without content type", 24 * time.Hour, call{body: `{"ttl": 300}`}, 300},
		{"json capped", time.Hour, call{body: `{"ttl": 7201}`}, 3600},
		{"form", 24 * time.Hour, call{body: "ttl=45", contentType: "application/x-www-form-urlencoded"}, 45},
		{"sub-second part truncated", 24 * time.Hour, call{target: Path + "?ttl=1500ms"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil, tt.maxTTL, []string{testSecret}, func() time.Time { return t0 })
			tt.c.key = testKey
			c := decodeCredential(t, tt.c.do(t, f.api))
			if c.TTL != tt.wantTTL {
				t.Fatalf("ttl %d, want %d", c.TTL, tt.wantTTL)
			}
			wantExp := t0.Add(time.Duration(tt.wantTTL) * time.Second)
			if !c.ExpiresAt.Equal(wantExp) {
				t.Fatalf("expires_at %s, want %s", c.ExpiresAt, wantExp)
			}
			if want := strconv.FormatInt(wantExp.Unix(), 10); c.Username != want {
				t.Fatalf("username %q, want %q", c.Username, want)
			}
			if c.Credential != testutil.RESTPassword(testSecret, c.Username) {
				t.Fatal("credential is not base64(HMAC-SHA1(secret, username))")
			}
		})
	}
}

func TestMintResponseShape(t *testing.T) {
	f := newFixture(t, nil, 24*time.Hour, []string{testSecret}, func() time.Time { return t0 })
	w := call{key: testKey, target: Path + "?user=alice"}.do(t, f.api)
	c := decodeCredential(t, w)
	if !strings.HasSuffix(c.Username, ":alice") {
		t.Fatalf("username %q does not carry the user", c.Username)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Fatalf("Cache-Control %q, want no-store", got)
	}
	for _, key := range []string{`"username"`, `"credential"`, `"ttl"`, `"expires_at"`, `"iceServers"`, `"urls"`} {
		if !strings.Contains(w.Body.String(), key) {
			t.Fatalf("response lacks %s: %s", key, w.Body)
		}
	}
	if len(c.ICEServers) != 2 {
		t.Fatalf("iceServers %+v, want a stun entry and a turn entry", c.ICEServers)
	}
	stun, turn := c.ICEServers[0], c.ICEServers[1]
	if strings.Join(stun.URLs, " ") != "stun:"+testHost+":3478" || stun.Username != "" {
		t.Fatalf("stun entry %+v", stun)
	}
	want := "turn:" + testHost + ":3478?transport=udp turn:" + testHost + ":3478?transport=tcp turns:" + testHost + ":5349?transport=tcp"
	if strings.Join(turn.URLs, " ") != want || turn.Username != c.Username || turn.Credential != c.Credential {
		t.Fatalf("turn entry %+v, want urls %s with the credential", turn, want)
	}
	if !strings.Contains(f.log.String(), "credentials minted") || strings.Contains(f.log.String(), testKey) {
		t.Fatalf("log should record the mint without the API key:\n%s", f.log)
	}
}

func TestRotation(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	f := newFixture(t, nil, 24*time.Hour, []string{"old-secret"}, clock)
	before := decodeCredential(t, call{key: testKey, target: Path + "?user=alice"}.do(t, f.api))
	if before.Credential != testutil.RESTPassword("old-secret", before.Username) {
		t.Fatal("credential not signed with the only secret")
	}
	rotated, err := auth.NewSnapshot(testRealm, nil, []string{"new-secret", "old-secret"})
	if err != nil {
		t.Fatal(err)
	}
	f.authn.Swap(rotated)
	after := decodeCredential(t, call{key: testKey, target: Path + "?user=alice"}.do(t, f.api))
	if after.Credential != testutil.RESTPassword("new-secret", after.Username) {
		t.Fatal("after rotation the credential is not signed with the new first secret")
	}
	tests := []struct {
		name     string
		user     string
		password string
		want     bool
	}{
		{"credential minted before rotation", before.Username, before.Credential, true},
		{"credential minted after rotation", after.Username, after.Credential, true},
		{"wrong password", after.Username, testutil.RESTPassword("other", after.Username), false},
	}
	for _, tt := range tests {
		if got := accepts(t, f.authn, tt.user, tt.password); got != tt.want {
			t.Errorf("%s: accepted=%v, want %v", tt.name, got, tt.want)
		}
	}
	dropped, err := auth.NewSnapshot(testRealm, nil, []string{"new-secret"})
	if err != nil {
		t.Fatal(err)
	}
	f.authn.Swap(dropped)
	if accepts(t, f.authn, before.Username, before.Credential) {
		t.Error("old secret removed, yet its credential is still accepted")
	}
}

func TestAPIKey(t *testing.T) {
	tests := []struct {
		name   string
		c      call
		status int
	}{
		{"missing key", call{}, http.StatusUnauthorized},
		{"wrong key", call{key: "key-not-configured-0000"}, http.StatusUnauthorized},
		{"key prefix", call{key: testKey[:len(testKey)-1]}, http.StatusUnauthorized},
		{"key plus suffix", call{key: testKey + "x"}, http.StatusUnauthorized},
		{"basic scheme", call{authz: "Basic " + testKey}, http.StatusUnauthorized},
		{"bare key", call{authz: testKey}, http.StatusUnauthorized},
		{"empty bearer", call{authz: "Bearer "}, http.StatusUnauthorized},
		{"valid key", call{key: testKey}, http.StatusOK},
		{"second valid key", call{key: otherKey}, http.StatusOK},
		{"scheme case-insensitive", call{authz: "bearer " + testKey}, http.StatusOK},
		{"no key from an allowed origin", call{origin: testOrigin}, http.StatusUnauthorized},
		{"key from an allowed origin", call{origin: testOrigin, key: testKey}, http.StatusOK},
	}
	f := newFixture(t, func(h *config.HTTP) { h.APIKeys = []string{testKey, otherKey} }, time.Hour, []string{testSecret}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.c.do(t, f.api)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if w.Code == http.StatusUnauthorized {
				if e := decodeError(t, w); e.Field != "Authorization" {
					t.Fatalf("error %+v does not name the Authorization field", e)
				}
				if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("401 without a Bearer challenge: %v", w.Header())
				}
			}
		})
	}
}

func TestCORS(t *testing.T) {
	tests := []struct {
		name      string
		anonymous bool
		c         call
		status    int
		// acao is the expected Access-Control-Allow-Origin: the page's
		// origin on every answer, errors included (see TestErrorsReadable).
		acao string
	}{
		{"disallowed origin", false, call{origin: "https://evil.example", key: testKey}, http.StatusForbidden, "https://evil.example"},
		{"disallowed origin anonymous", true, call{origin: "https://evil.example"}, http.StatusForbidden, "https://evil.example"},
		{"null origin", true, call{origin: "null"}, http.StatusForbidden, "null"},
		{"origin differs by port", false, call{origin: testOrigin + ":8443", key: testKey}, http.StatusForbidden, testOrigin + ":8443"},
		{"origin differs by scheme", false, call{origin: "http://app.example.com", key: testKey}, http.StatusForbidden, "http://app.example.com"},
		{"allowed origin with key", false, call{origin: testOrigin, key: testKey}, http.StatusOK, testOrigin},
		{"allowed origin no key", false, call{origin: testOrigin}, http.StatusUnauthorized, testOrigin},
		{"allowed origin anonymous", true, call{origin: testOrigin}, http.StatusOK, testOrigin},
		{"anonymous needs an origin", true, call{}, http.StatusUnauthorized, ""},
		{"anonymous wrong key", true, call{origin: testOrigin, key: "key-not-configured-0000"}, http.StatusUnauthorized, testOrigin},
		{"preflight allowed", false, call{method: http.MethodOptions, origin: testOrigin,
			header: map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}},
			http.StatusNoContent, testOrigin},
		{"preflight disallowed", false, call{method: http.MethodOptions, origin: "https://evil.example",
			header: map[string]string{"Access-Control-Request-Method": "POST"}}, http.StatusForbidden, "https://evil.example"},
		{"preflight wrong method", false, call{method: http.MethodOptions, origin: testOrigin,
			header: map[string]string{"Access-Control-Request-Method": "DELETE"}}, http.StatusMethodNotAllowed, testOrigin},
		{"GET", false, call{method: http.MethodGet, key: testKey}, http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(h *config.HTTP) { h.AllowAnonymousOrigins = tt.anonymous }, time.Hour, []string{testSecret}, nil)
			w := tt.c.do(t, f.api)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != tt.acao {
				t.Fatalf("Access-Control-Allow-Origin %q, want %q", got, tt.acao)
			}
			if !strings.Contains(strings.Join(w.Header().Values("Vary"), ","), "Origin") {
				t.Fatalf("no Vary: Origin in %v", w.Header())
			}
			if w.Code == http.StatusForbidden {
				if e := decodeError(t, w); e.Field != "Origin" {
					t.Fatalf("403 error %+v does not name the Origin", e)
				}
			}
			if tt.name == "preflight allowed" {
				h := w.Header()
				if h.Get("Access-Control-Allow-Methods") != "POST" || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
					t.Fatalf("preflight headers %v", h)
				}
			}
			if tt.c.method == http.MethodGet && w.Header().Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name   string
		c      call
		status int
		field  string
	}{
		{"ttl not a number", call{target: Path + "?ttl=soon"}, 400, "ttl"},
		{"ttl zero", call{target: Path + "?ttl=0"}, 400, "ttl"},
		{"ttl negative", call{target: Path + "?ttl=-5"}, 400, "ttl"},
		{"ttl negative duration", call{target: Path + "?ttl=-1h"}, 400, "ttl"},
		{"ttl below a second", call{target: Path + "?ttl=500ms"}, 400, "ttl"},
		{"ttl empty", call{target: Path + "?ttl="}, 400, "ttl"},
		{"ttl twice", call{target: Path + "?ttl=1&ttl=2"}, 400, "ttl"},
		{"ttl json fraction", call{body: `{"ttl": 1.5}`}, 400, "ttl"},
		{"ttl json exponent", call{body: `{"ttl": 1e3}`}, 400, "ttl"},
		{"ttl json bool", call{body: `{"ttl": true}`}, 400, "ttl"},
		{"ttl in query and body", call{target: Path + "?ttl=60", body: `{"ttl": 60}`}, 400, "ttl"},
		{"user with colon", call{target: Path + "?user=a:b"}, 400, "user"},
		{"user too long", call{target: Path + "?user=" + strings.Repeat("u", 129)}, 400, "user"},
		{"user control char", call{body: `{"user": "a\u0007"}`}, 400, "user"},
		{"user number", call{body: `{"user": 7}`}, 400, "user"},
		{"unknown query field", call{target: Path + "?tll=60"}, 400, "tll"},
		{"unknown json field", call{body: `{"usr": "alice"}`}, 400, "usr"},
		{"body not json", call{body: `user=alice`, contentType: "application/json"}, 400, "body"},
		{"body json array", call{body: `[1]`}, 400, "body"},
		{"body json null", call{body: `null`}, 400, "body"},
		{"body trailing data", call{body: `{} {}`}, 400, "body"},
		{"body text/plain", call{body: `{}`, contentType: "text/plain"}, 415, "body"},
		{"body too large", call{body: `{"user": "` + strings.Repeat("a", 5000) + `"}`}, 413, "body"},
		{"bad query", call{target: Path + "?ttl=%zz"}, 400, "query"},
	}
	f := newFixture(t, nil, time.Hour, []string{testSecret}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.key = testKey
			w := tt.c.do(t, f.api)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			e := decodeError(t, w)
			if e.Field != tt.field {
				t.Fatalf("field %q, want %q (error %q)", e.Field, tt.field, e.Error)
			}
			if !strings.HasPrefix(e.Error, tt.field) {
				t.Fatalf("message %q does not start with the field %q", e.Error, tt.field)
			}
		})
	}
}

func TestNoSecret(t *testing.T) {
	f := newFixture(t, nil, time.Hour, nil, nil)
	w := call{key: testKey}.do(t, f.api)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", w.Code)
	}
	if e := decodeError(t, w); !strings.Contains(e.Error, "auth.secrets") {
		t.Fatalf("error %q does not point at auth.secrets", e.Error)
	}
}

func TestRateLimit(t *testing.T) {
	tests := []struct {
		name string
		// first and other are two callers; other must not be limited by
		// first's burst.
		first, other call
		mutate       func(*config.HTTP)
	}{
		{"per key", call{key: testKey, remote: "192.0.2.1:1000"}, call{key: otherKey, remote: "192.0.2.1:1001"},
			func(h *config.HTTP) { h.APIKeys = []string{testKey, otherKey}; h.Rate, h.Burst = 60, 3 }},
		{"per IP anonymous", call{origin: testOrigin, remote: "192.0.2.1:1000"}, call{origin: testOrigin, remote: "192.0.2.2:1000"},
			func(h *config.HTTP) { h.AllowAnonymousOrigins = true; h.IPRate, h.IPBurst = 60, 3 }},
		{"per IP wrong keys", call{key: "key-guess-00000000", remote: "192.0.2.1:1000"}, call{key: testKey, remote: "192.0.2.1:1001"},
			func(h *config.HTTP) { h.IPRate, h.IPBurst = 60, 3 }},
		{"per IPv6 /64", call{origin: testOrigin, remote: "[2001:db8:1:2::1]:1000"}, call{origin: testOrigin, remote: "[2001:db8:1:3::1]:1000"},
			func(h *config.HTTP) { h.AllowAnonymousOrigins = true; h.IPRate, h.IPBurst = 60, 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t, tt.mutate, time.Hour, []string{testSecret}, time.Now)
				okStatus := tt.first.do(t, f.api).Code
				for i := 1; i < 3; i++ {
					if w := tt.first.do(t, f.api); w.Code != okStatus || w.Code == http.StatusTooManyRequests {
						t.Fatalf("request %d within the burst: status %d", i+1, w.Code)
					}
				}
				w := tt.first.do(t, f.api)
				if w.Code != http.StatusTooManyRequests {
					t.Fatalf("request past the burst: status %d, want 429", w.Code)
				}
				if ra := w.Header().Get("Retry-After"); ra != "1" {
					t.Fatalf("Retry-After %q, want 1 (one token per second)", ra)
				}
				decodeError(t, w)
				if w := tt.other.do(t, f.api); w.Code == http.StatusTooManyRequests {
					t.Fatal("another caller was limited by the first one's burst")
				}
				time.Sleep(time.Second)
				if w := tt.first.do(t, f.api); w.Code != okStatus {
					t.Fatalf("after Retry-After: status %d, want %d", w.Code, okStatus)
				}
				if w := tt.first.do(t, f.api); w.Code != http.StatusTooManyRequests {
					t.Fatalf("second request after one token refilled: status %d, want 429", w.Code)
				}
			})
		})
	}
}

func TestSwapPolicy(t *testing.T) {
	f := newFixture(t, nil, time.Hour, []string{testSecret}, nil)
	if w := (call{key: otherKey}).do(t, f.api); w.Code != http.StatusUnauthorized {
		t.Fatalf("unknown key: status %d", w.Code)
	}
	h := testHTTP()
	h.APIKeys = []string{otherKey}
	h.CORSOrigins = []string{"http://localhost:9000"}
	pol, err := NewPolicy(h, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	old := f.api.Swap(pol)
	if d := Diff(old, pol); d != "api keys 1->1 +1 -1, origins 1->1, max ttl 10m0s" {
		t.Fatalf("Diff %q", d)
	}
	tests := []struct {
		name   string
		c      call
		status int
	}{
		{"removed key", call{key: testKey}, http.StatusUnauthorized},
		{"added key", call{key: otherKey}, http.StatusOK},
		{"removed origin", call{key: otherKey, origin: testOrigin}, http.StatusForbidden},
		{"added origin", call{key: otherKey, origin: "http://localhost:9000"}, http.StatusOK},
	}
	for _, tt := range tests {
		if w := tt.c.do(t, f.api); w.Code != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, w.Code, tt.status)
		}
	}
	c := decodeCredential(t, call{key: otherKey, target: Path + "?ttl=1h"}.do(t, f.api))
	if c.TTL != 600 {
		t.Fatalf("ttl %d after max-ttl went to 10m", c.TTL)
	}
	if f.api.Swap(nil) != pol {
		t.Fatal("Swap(nil) replaced the policy")
	}
}

func TestNewPolicy(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.HTTP)
		maxTTL time.Duration
		want   string // error substring; "" = valid
	}{
		{"valid", nil, time.Hour, ""},
		{"no keys", func(h *config.HTTP) { h.APIKeys = nil }, time.Hour, ""},
		{"duplicate key", func(h *config.HTTP) { h.APIKeys = []string{testKey, testKey} }, time.Hour, "http.api-keys: key #2 repeats key #1"},
		{"empty key", func(h *config.HTTP) { h.APIKeys = []string{""} }, time.Hour, "http.api-keys"},
		{"wildcard origin", func(h *config.HTTP) { h.CORSOrigins = []string{"*"} }, time.Hour, "http.cors-origins"},
		{"origin with path", func(h *config.HTTP) { h.CORSOrigins = []string{"https://a.example/app"} }, time.Hour, "http.cors-origins"},
		{"anonymous without origins", func(h *config.HTTP) { h.CORSOrigins = nil; h.AllowAnonymousOrigins = true }, time.Hour, "http.allow-anonymous-origins"},
		{"zero rate", func(h *config.HTTP) { h.Rate = 0 }, time.Hour, "http.rate"},
		{"zero ip burst", func(h *config.HTTP) { h.IPBurst = 0 }, time.Hour, "http.ip-burst"},
		{"zero max ttl", nil, 0, "auth.max-ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHTTP()
			if tt.mutate != nil {
				tt.mutate(&h)
			}
			p, err := NewPolicy(h, tt.maxTTL)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s := fmt.Sprint(p) + p.LogValue().String(); strings.Contains(s, testKey) {
					t.Fatalf("policy prints its key: %s", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Fatalf("error %q echoes the key", err)
			}
		})
	}
}

func TestOriginCanonical(t *testing.T) {
	h := testHTTP()
	h.CORSOrigins = []string{"HTTPS://App.Example.com:443/", "http://localhost:9000", "http://[::1]:80"}
	p, err := NewPolicy(h, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://app.example.com":     true,
		"http://localhost:9000":       true,
		"http://[::1]":                true,
		"http://localhost":            false,
		"https://app.example.com:443": false, // browsers never send the default port
	} {
		if got := p.originAllowed(origin); got != want {
			t.Errorf("originAllowed(%q) = %v, want %v", origin, got, want)
		}
	}
}

func TestMatchFindsEachKey(t *testing.T) {
	h := testHTTP()
	h.APIKeys = []string{"key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb", "key-cccccccccccccccc"}
	p, err := NewPolicy(h, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range h.APIKeys {
		got, ok := p.match(k)
		if !ok || got.id != p.keys[i].id {
			t.Errorf("key #%d: match = %v, %v", i+1, got.id, ok)
		}
	}
	if _, ok := p.match("key-dddddddddddddddd"); ok {
		t.Error("an unknown key matched")
	}
}

func TestLimiterEviction(t *testing.T) {
	ls := newLimiters(2)
	l := limit{every: 1, burst: 1}
	now := t0
	for _, k := range []string{"a", "b", "a", "c"} { // b is least recently used when c arrives
		ls.allow(k, now, l)
	}
	if n := ls.len(); n != 2 {
		t.Fatalf("%d buckets, want the bound 2", n)
	}
	if ok, _ := ls.allow("a", now, l); ok {
		t.Fatal("a's bucket was evicted, though b was least recently used")
	}
	if ok, _ := ls.allow("b", now, l); !ok {
		t.Fatal("b's bucket was kept, though it was least recently used")
	}
	if ok, wait := ls.allow("a", now, limit{every: 0.5, burst: 1}); ok || wait != 2*time.Second {
		t.Fatalf("a after a limit change: ok=%v wait=%v, want a 2s wait", ok, wait)
	}
}

// TestPlacement: with a cluster, the answer names the nodes Place picks
// for the caller's region, in its order; with none picked, this node.
func TestPlacement(t *testing.T) {
	f := newFixture(t, nil, 24*time.Hour, []string{testSecret}, func() time.Time { return t0 })
	udp := []config.Listener{{Transport: config.UDP, Addr: netip.MustParseAddrPort("0.0.0.0:3478")}}
	var asked []string
	picks := []creds.Target{{Host: "b.example.com", Listeners: udp}, {Host: "a.example.com", Listeners: udp}}
	f.api.o.Place = func(region string) []creds.Target {
		asked = append(asked, region)
		if region == "nowhere" {
			return nil
		}
		return picks
	}
	c := decodeCredential(t, call{key: testKey, body: `{"user":"alice","region":"eu-west"}`, contentType: "application/json"}.do(t, f.api))
	if got := strings.Join(c.ICEServers[1].URLs, " "); got != "turn:b.example.com:3478?transport=udp turn:a.example.com:3478?transport=udp" {
		t.Fatalf("turn URLs %s, want the placed nodes in order", got)
	}
	if got := strings.Join(c.ICEServers[0].URLs, " "); got != "stun:b.example.com:3478 stun:a.example.com:3478" {
		t.Fatalf("stun URLs %s", got)
	}
	c = decodeCredential(t, call{key: testKey, target: Path + "?region=nowhere"}.do(t, f.api))
	if !strings.Contains(strings.Join(c.ICEServers[1].URLs, " "), testHost) {
		t.Fatalf("no node placed: want this node, got %+v", c.ICEServers)
	}
	decodeCredential(t, call{key: testKey}.do(t, f.api))
	if strings.Join(asked, ",") != "eu-west,nowhere," {
		t.Fatalf("Place asked for %q", asked)
	}
	w := call{key: testKey, target: Path + "?region=" + strings.Repeat("x", 65)}.do(t, f.api)
	if w.Code != http.StatusBadRequest || decodeError(t, w).Field != "region" {
		t.Fatalf("a bad region: %d %s", w.Code, w.Body)
	}
}
