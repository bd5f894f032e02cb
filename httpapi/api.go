package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/internal/ratelimit"
)

// Path is where the credentials API is mounted.
const Path = "/v1/credentials"

// Compile-time interface guard.
var _ http.Handler = (*API)(nil)

// Options is what the credentials API needs beyond its Policy.
type Options struct {
	// Credentials returns the snapshot new credentials are signed with:
	// (*auth.Authenticator).Snapshot, so a reload's new secrets apply at once.
	Credentials func() *auth.Snapshot
	// Host is the host name or IP put in the iceServers URLs.
	Host string
	// Listeners are ferry's listeners as bound (real ports).
	Listeners []config.Listener
	// Place, if set, picks the nodes an answer names for a caller in
	// region ("" when it gave none): the cluster's least-loaded ready
	// nodes. Empty: this node (Host, Listeners).
	Place func(region string) []creds.Target
	// Log receives one line per credential minted (info) and per refusal
	// (info, a burst then a few a minute, with a periodic count of the
	// refusals left out). Nil discards.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxLimiters bounds each rate-limiter map (API keys, client IPs);
	// 0 means 10000.
	MaxLimiters int
}

// API serves POST /v1/credentials. It is safe for concurrent use.
type API struct {
	o      Options
	policy atomic.Pointer[Policy]
	keys   *limiters
	ips    *limiters

	// refusals bounds the refusal log lines; summaryArmed is set while a
	// timer is to report the lines left out, summaryEvery after the first.
	refusals     ratelimit.LogBudget
	summaryArmed atomic.Bool
	summaryEvery time.Duration
	epoch        time.Time
}

// Refusal log lines: a burst, then a few a minute.
const (
	refusalLogBurst      = 10
	refusalLogsPerMinute = 6
)

var refusalLogRate = ratelimit.NewRate(refusalLogsPerMinute, time.Minute, refusalLogBurst)

// New returns the credentials API serving p.
func New(o Options, p *Policy) (*API, error) {
	if o.Credentials == nil {
		return nil, errors.New("httpapi: Options.Credentials is nil")
	}
	if p == nil {
		return nil, errors.New("httpapi: nil policy")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &API{o: o, keys: newLimiters(o.MaxLimiters), ips: newLimiters(o.MaxLimiters), summaryEvery: time.Minute, epoch: o.Now()}
	a.policy.Store(p)
	return a, nil
}

// Policy returns the policy in force.
func (a *API) Policy() *Policy { return a.policy.Load() }

// Swap makes p the policy in force (nil is ignored) and returns the previous
// one. Requests already running finish under the old policy. Rate-limit
// buckets are kept; changed limits apply to them from their next request.
func (a *API) Swap(p *Policy) (old *Policy) {
	if p == nil {
		return a.policy.Load()
	}
	return a.policy.Swap(p)
}

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// ServeHTTP answers POST (mint), OPTIONS (CORS preflight) and 405 otherwise.
//
// Every answer to a page (a request with an Origin) carries
// Access-Control-Allow-Origin: <that origin> and Vary: Origin, errors
// included, so that the page reads the JSON error saying what is wrong
// instead of a bare "TypeError: Failed to fetch". That grants nothing: an
// origin outside http.cors-origins gets 403 and no credential whatever it
// sends, and its preflight is refused (see refuseOrigin).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := a.policy.Load()
	now := a.o.Now()
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	fromPage := origin != ""
	listed := false
	if fromPage {
		h.Set("Access-Control-Allow-Origin", origin)
		// ferry's own test page (served on this listener, so its origin
		// is this request's host) may call with an API key without
		// being listed; only listed origins may call without one.
		listed = p.originAllowed(origin)
		if !listed && !sameOrigin(r, origin) {
			a.refuseOrigin(w, r, origin)
			return
		}
		h.Set("Access-Control-Expose-Headers", "Retry-After")
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		a.preflight(w, r, fromPage)
		return
	default:
		h.Set("Allow", "POST, OPTIONS")
		writeError(w, http.StatusMethodNotAllowed, "", r.Method+" is not allowed; use POST")
		return
	}

	caller, ok := a.authorize(w, r, p, now, fromPage, listed)
	if !ok {
		return
	}
	req, ierr := parseRequest(r)
	if ierr != nil {
		a.refuse(r, "bad input", "caller", caller, "field", ierr.field, "err", ierr.msg)
		writeError(w, ierr.status, ierr.field, ierr.field+" "+ierr.msg)
		return
	}
	snap := a.o.Credentials()
	if snap == nil || !snap.HasSecrets() {
		a.o.Log.Warn("credentials API: no REST API secret to sign with; set auth.secrets", "caller", caller)
		writeError(w, http.StatusServiceUnavailable, "", "ferry has no shared secret to sign credentials with; set auth.secrets on the server")
		return
	}
	ttl := req.ttl
	if ttl == 0 {
		ttl = defaultTTL
	}
	var targets []creds.Target
	if a.o.Place != nil {
		targets = a.o.Place(req.region)
	}
	if len(targets) == 0 {
		targets = []creds.Target{{Host: a.o.Host, Listeners: a.o.Listeners}}
	}
	c, err := creds.Mint(snap, req.user, ttl, p.maxTTL, now, targets)
	if err != nil {
		a.o.Log.Error("credentials API: mint failed", "caller", caller, "err", err)
		writeError(w, http.StatusInternalServerError, "", "could not mint a credential")
		return
	}
	a.o.Log.Info("credentials minted", "caller", caller, "user", req.user, "ttl", c.TTL, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, c)
}

// refuseOrigin answers a page on an origin outside http.cors-origins: 403
// with a JSON error naming the origin and the setting, readable by the page
// (the caller set Access-Control-Allow-Origin) for a simple request or the
// actual request.
//
// A preflight (OPTIONS) gets the same 403 and body, with
// Access-Control-Allow-Origin but no Access-Control-Allow-Methods,
// Access-Control-Allow-Headers or Access-Control-Max-Age. The browser fails
// that preflight twice over: its status is not 2xx, and it allows neither
// the Authorization header nor a JSON Content-Type, which are not
// CORS-safelisted. So the POST is never sent. Script never reads a
// preflight's answer (fetch rejects with a TypeError either way), but with
// the origin echoed the browser's console blames the preflight's 403
// status, not a missing Access-Control-Allow-Origin (which reads like a
// server fault), and the network panel shows the body saying which setting
// to change. Answering the preflight 2xx with the allow headers would let
// the page read the POST's 403 too, but would tell the browser the POST is
// allowed; it is not, so the preflight says no.
//
// A request the browser sends without a preflight (a POST with only
// safelisted headers) reaches ServeHTTP as a POST and gets the 403 here,
// readable: the origin check, not the browser, is what refuses it.
func (a *API) refuseOrigin(w http.ResponseWriter, r *http.Request, origin string) {
	a.refuse(r, "origin not allowed", "origin", origin, "method", r.Method)
	if r.Method == http.MethodOptions {
		w.Header().Add("Vary", "Access-Control-Request-Method")
		w.Header().Add("Vary", "Access-Control-Request-Headers")
	}
	writeError(w, http.StatusForbidden, "Origin", "origin "+origin+" is not in http.cors-origins; add it to let this page mint credentials")
}

// preflight answers a CORS preflight. The origin was already checked.
func (a *API) preflight(w http.ResponseWriter, r *http.Request, fromPage bool) {
	h := w.Header()
	h.Set("Allow", "POST, OPTIONS")
	if fromPage {
		if m := r.Header.Get("Access-Control-Request-Method"); m != "" && m != http.MethodPost {
			writeError(w, http.StatusMethodNotAllowed, "Access-Control-Request-Method", m+" is not allowed; use POST")
			return
		}
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", "POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}

// authorize admits a request with a valid API key (limited per key) or, when
// the policy allows anonymous origins, a page on an allowed origin (limited
// per client IP). Everything else is limited per client IP too, then refused
// with 401. It returns the caller as logged: "key:<id>" or "origin:<origin>".
func (a *API) authorize(w http.ResponseWriter, r *http.Request, p *Policy, now time.Time, fromPage, listed bool) (string, bool) {
	authz := r.Header.Get("Authorization")
	if authz != "" {
		token, isBearer := bearer(authz)
		if k, ok := p.match(token); isBearer && ok {
			caller := "key:" + k.id
			return caller, a.limit(w, r, a.keys, k.id, p.perKey, now, caller)
		}
		if !a.limit(w, r, a.ips, clientKey(r.RemoteAddr), p.perIP, now, "ip") {
			return "", false
		}
		a.refuse(r, "invalid API key")
		w.Header().Set("WWW-Authenticate", `Bearer realm="ferry", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "Authorization", "the API key is not valid; send Authorization: Bearer <api key> with a key listed in http.api-keys")
		return "", false
	}
	if !a.limit(w, r, a.ips, clientKey(r.RemoteAddr), p.perIP, now, "ip") {
		return "", false
	}
	if fromPage && listed && p.anonymous {
		return "origin:" + r.Header.Get("Origin"), true
	}
	a.refuse(r, "no API key")
	w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
	msg := "an API key is required; send Authorization: Bearer <api key> with a key listed in http.api-keys"
	switch {
	case fromPage && !listed:
		msg += " (this is ferry's own page: it calls without a key only when its origin is in http.cors-origins and http.allow-anonymous-origins is on)"
	case fromPage:
		// Keys belong on a backend; a page calls without one only when
		// the server lets pages on its origins do so.
		msg += " (from your backend: a page calls without a key only when http.allow-anonymous-origins is on)"
	}
	writeError(w, http.StatusUnauthorized, "Authorization", msg)
	return "", false
}

// limit takes a token from key's bucket in ls, or answers 429.
func (a *API) limit(w http.ResponseWriter, r *http.Request, ls *limiters, key string, l limit, now time.Time, caller string) bool {
	ok, wait := ls.allow(key, now, l)
	if ok {
		return true
	}
	secs := int64(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	a.refuse(r, "rate limited", "caller", caller, "retry_after_s", secs)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	setting := "http.ip-rate and http.ip-burst per client IP"
	if ls == a.keys {
		setting = "http.rate and http.burst per API key"
	}
	writeError(w, http.StatusTooManyRequests, "", "too many requests; retry in "+strconv.FormatInt(secs, 10)+"s (limits: "+setting+")")
	return false
}

// refuse logs a refused request at info level, never a key: a burst of
// lines, then a few a minute, and within summaryEvery of the first line
// left out a count of those left out.
func (a *API) refuse(r *http.Request, reason string, attrs ...any) {
	ctx := context.Background()
	if !a.o.Log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	if !a.refusals.Allow(refusalLogRate, int64(a.o.Now().Sub(a.epoch))) {
		if a.summaryArmed.CompareAndSwap(false, true) {
			time.AfterFunc(a.summaryEvery, a.logSuppressed)
		}
		return
	}
	a.o.Log.Info("credentials API: refused", append([]any{"reason", reason, "remote", r.RemoteAddr}, attrs...)...)
}

// logSuppressed reports the refusal lines left out since the last report.
func (a *API) logSuppressed() {
	a.summaryArmed.Store(false)
	n, _ := a.refusals.Suppressed(int64(a.o.Now().Sub(a.epoch)), math.MinInt64)
	if n > 0 {
		a.o.Log.Info("similar lines suppressed", "of", "credentials API: refused", "lines", n,
			"limit", strconv.Itoa(refusalLogBurst)+" at once, then "+strconv.Itoa(refusalLogsPerMinute)+" a minute")
	}
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// clientKey is the per-IP limiter key: the address, IPv6 by its /64.
func clientKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return remote
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func writeError(w http.ResponseWriter, status int, field, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Field: field})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// sameOrigin reports whether origin is the origin of r's own URL: a page
// served by this listener (ferry's test page), not a page elsewhere.
func sameOrigin(r *http.Request, origin string) bool {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return r.Host != "" && strings.EqualFold(origin, scheme+r.Host)
}
