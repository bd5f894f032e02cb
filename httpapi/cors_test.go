package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/config"
)

// Every error answer to a page carries Access-Control-Allow-Origin: <the
// page's origin> and Vary: Origin, so the page reads the JSON error instead
// of "TypeError: Failed to fetch"; a refused origin is still refused and
// gets no credential, and its preflight allows nothing.
func TestErrorsReadable(t *testing.T) {
	const evil = "https://evil.example"
	tests := []struct {
		name    string
		mutate  func(*config.HTTP)
		secrets []string
		// before are calls made first (to use up a rate limit).
		before []call
		c      call
		status int
		field  string
		// says is a substring of the error, telling what to do.
		says string
	}{
		{name: "refused origin", c: call{origin: evil, key: testKey}, status: 403, field: "Origin",
			says: "origin " + evil + " is not in http.cors-origins; add it to let this page mint credentials"},
		{name: "refused origin, anonymous on", mutate: func(h *config.HTTP) { h.AllowAnonymousOrigins = true },
			c: call{origin: evil}, status: 403, field: "Origin", says: "http.cors-origins"},
		{name: "refused origin preflight", c: call{method: http.MethodOptions, origin: evil,
			header: map[string]string{"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}},
			status: 403, field: "Origin", says: "http.cors-origins"},
		{name: "refused origin GET", c: call{method: http.MethodGet, origin: evil}, status: 403, field: "Origin", says: "http.cors-origins"},
		{name: "no API key", c: call{origin: testOrigin}, status: 401, field: "Authorization", says: "http.allow-anonymous-origins"},
		{name: "bad API key", c: call{origin: testOrigin, key: "key-not-configured-0000"}, status: 401, field: "Authorization", says: "http.api-keys"},
		{name: "rate limited per key", mutate: func(h *config.HTTP) { h.Rate, h.Burst = 1, 1 },
			before: []call{{origin: testOrigin, key: testKey}}, c: call{origin: testOrigin, key: testKey}, status: 429, says: "http.rate"},
		{name: "rate limited per IP", mutate: func(h *config.HTTP) { h.IPRate, h.IPBurst = 1, 1 },
			before: []call{{origin: testOrigin}}, c: call{origin: testOrigin}, status: 429, says: "http.ip-rate"},
		{name: "bad input", c: call{origin: testOrigin, key: testKey, target: Path + "?ttl=soon"}, status: 400, field: "ttl", says: "ttl"},
		{name: "no secret", secrets: []string{}, c: call{origin: testOrigin, key: testKey}, status: 503, says: "set auth.secrets"},
		{name: "wrong method", c: call{method: http.MethodGet, origin: testOrigin, key: testKey}, status: 405, says: "use POST"},
		{name: "preflight wrong method", c: call{method: http.MethodOptions, origin: testOrigin,
			header: map[string]string{"Access-Control-Request-Method": "PUT"}}, status: 405, field: "Access-Control-Request-Method", says: "use POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := []string{testSecret}
			if tt.secrets != nil {
				secrets = tt.secrets
			}
			f := newFixture(t, tt.mutate, time.Hour, secrets, nil)
			for _, c := range tt.before {
				if w := c.do(t, f.api); w.Code != http.StatusOK && w.Code != http.StatusUnauthorized {
					t.Fatalf("call before: %d %s", w.Code, w.Body)
				}
			}
			w := tt.c.do(t, f.api)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			h := w.Header()
			if got := h.Get("Access-Control-Allow-Origin"); got != tt.c.origin {
				t.Fatalf("Access-Control-Allow-Origin %q, want %q", got, tt.c.origin)
			}
			if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Fatalf("no Vary: Origin in %v", h)
			}
			if h.Get("Access-Control-Allow-Credentials") != "" {
				t.Fatalf("credentials allowed: %v", h)
			}
			e := decodeError(t, w)
			if e.Field != tt.field || !strings.Contains(e.Error, tt.says) {
				t.Fatalf("error %+v, want field %q and %q", e, tt.field, tt.says)
			}
			if tt.c.origin == evil {
				// Granting nothing: no credential, and a preflight that
				// allows neither the method's headers nor caching.
				if strings.Contains(w.Body.String(), "iceServers") || strings.Contains(w.Body.String(), "password") {
					t.Fatalf("credential sent to a refused origin: %s", w.Body)
				}
				for _, k := range []string{"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age", "Access-Control-Expose-Headers"} {
					if v := h.Get(k); v != "" {
						t.Fatalf("%s: %s sent to a refused origin", k, v)
					}
				}
			}
			if tt.status == 429 && !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Retry-After") {
				t.Fatalf("Retry-After not exposed to the page: %v", h)
			}
		})
	}
}

// Refusals are logged at info, a burst then a few a minute, with a count
// of those left out.
func TestRefusalsLoggedBounded(t *testing.T) {
	f := newFixture(t, nil, time.Hour, []string{testSecret}, nil)
	f.api.summaryEvery = 10 * time.Millisecond
	const n = 100
	for range n {
		if w := (call{origin: "https://evil.example"}).do(t, f.api); w.Code != 403 {
			t.Fatalf("status %d", w.Code)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.log.String(), "similar lines suppressed") {
		if time.Now().After(deadline) {
			t.Fatalf("no count of the refusals left out:\n%s", f.log)
		}
		time.Sleep(5 * time.Millisecond)
	}
	log := f.log.String()
	if got := strings.Count(log, `level=INFO msg="credentials API: refused" reason="origin not allowed"`); got != refusalLogBurst {
		t.Fatalf("%d refusal lines for %d refusals, want %d:\n%s", got, n, refusalLogBurst, log)
	}
	if want := `msg="similar lines suppressed" of="credentials API: refused" lines=90`; !strings.Contains(log, want) {
		t.Fatalf("log lacks %q:\n%s", want, log)
	}
}

// TestOwnOrigin: ferry's own page (its origin is the request's host) calls
// with an API key without being listed in http.cors-origins, never without
// one; another scheme or host on the same name is another origin.
func TestOwnOrigin(t *testing.T) {
	const own = "http://example.com" // httptest.NewRequest's host
	tests := []struct {
		name   string
		c      call
		status int
		says   string
	}{
		{"own origin with a key", call{origin: own, key: testKey}, 200, ""},
		{"own origin without a key", call{origin: own}, 401, "ferry's own page"},
		{"own host, other scheme", call{origin: "https://example.com", key: testKey}, 403, "http.cors-origins"},
		{"own host, other port", call{origin: "http://example.com:8443", key: testKey}, 403, "http.cors-origins"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(h *config.HTTP) { h.AllowAnonymousOrigins = true }, time.Hour, []string{testSecret}, nil)
			w := tt.c.do(t, f.api)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			if tt.status == 200 {
				if !strings.Contains(w.Body.String(), "iceServers") {
					t.Fatalf("no credential: %s", w.Body)
				}
				return
			}
			if e := decodeError(t, w); !strings.Contains(e.Error, tt.says) {
				t.Fatalf("error %q does not say %q", e.Error, tt.says)
			}
		})
	}
}
