package testpage

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/engine"
)

var now = time.Date(2026, 5, 4, 3, 2, 1, 987654321, time.UTC)

func newServer(t *testing.T, o Options) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	Mount(mux, o)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

// checkSecure fails unless res carries the headers of every answer.
func checkSecure(t *testing.T, what string, res *http.Response) {
	t.Helper()
	if got := res.Header.Get("Content-Security-Policy"); got != CSP {
		t.Errorf("%s: Content-Security-Policy %q, want %q", what, got, CSP)
	}
	if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", what, got)
	}
	if got := res.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("%s: Access-Control-Allow-Origin %q, want none", what, got)
	}
}

func TestPage(t *testing.T) {
	srv := newServer(t, Options{})
	res, body := do(t, http.MethodGet, srv.URL+"/", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", res.StatusCode)
	}
	checkSecure(t, "GET /", res)
	if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	for _, want := range []string{`<script src="/ui/app.js" defer></script>`, `<link rel="stylesheet" href="/ui/app.css">`,
		`id="run"`, `id="rows"`, `id="relay-result"`, `id="copy-ice"`, `id="chart"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page has no %s", want)
		}
	}
	// The CSP allows no inline script or style: the page must have none.
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(body, -1) {
		if !strings.Contains(m, ` src="/ui/`) {
			t.Errorf("inline script %s", m)
		}
	}
	if regexp.MustCompile(`<style|\sstyle=|\son[a-z]+=`).MatchString(body) {
		t.Error("the page has an inline style or event handler attribute, which its CSP blocks")
	}
	for _, d := range []string{"default-src 'self'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(CSP, d) {
			t.Errorf("CSP has no %s", d)
		}
	}
	if strings.Contains(CSP, "unsafe") {
		t.Errorf("CSP %q allows something unsafe", CSP)
	}

	// A second GET with the ETag is answered 304.
	res2, _ := do(t, http.MethodGet, srv.URL+"/", map[string]string{"If-None-Match": res.Header.Get("ETag")})
	if res.Header.Get("ETag") == "" || res2.StatusCode != http.StatusNotModified {
		t.Fatalf("ETag %q: conditional GET %d, want 304", res.Header.Get("ETag"), res2.StatusCode)
	}
}

func TestAssets(t *testing.T) {
	srv := newServer(t, Options{})
	for path, ct := range map[string]string{"/ui/app.js": "text/javascript; charset=utf-8", "/ui/app.css": "text/css; charset=utf-8"} {
		res, body := do(t, http.MethodGet, srv.URL+path, nil)
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != ct || len(body) < 1000 {
			t.Fatalf("GET %s: %d %q, %d bytes", path, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
		checkSecure(t, "GET "+path, res)
	}
	for _, path := range []string{"/ui/", "/ui/index.html", "/ui/missing.js", "/ui/../testpage.go", "/index.html"} {
		res, _ := do(t, http.MethodGet, srv.URL+path, nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, res.StatusCode)
		}
	}
	// Every embedded file is served.
	var names []string
	if err := fs.WalkDir(Files(), "ui", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "ui/app.css ui/app.js ui/index.html" {
		t.Fatalf("embedded files %q", names)
	}
}

func TestMethods(t *testing.T) {
	srv := newServer(t, Options{})
	for _, path := range []string{"/", "/ui/app.js", StatusPath} {
		res, body := do(t, http.MethodHead, srv.URL+path, nil)
		if res.StatusCode != http.StatusOK || body != "" {
			t.Errorf("HEAD %s: %d, %d bytes of body", path, res.StatusCode, len(body))
		}
		checkSecure(t, "HEAD "+path, res)
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions} {
			res, _ := do(t, m, srv.URL+path, map[string]string{"Origin": "https://elsewhere.example"})
			if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow GET, HEAD", m, path, res.StatusCode, res.Header.Get("Allow"))
			}
			if res.Header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("%s %s: CORS header", m, path)
			}
		}
	}
}

func TestStatus(t *testing.T) {
	draining := false
	st := engine.Snapshot{
		ToPeerPackets: 10, ToPeerBytes: 1000, FromPeerPackets: 20, FromPeerBytes: 3000,
		Allocations: 3, Bindings: 99, PeerDenied: map[string]uint64{"private": 4},
	}
	srv := newServer(t, Options{
		Version:  "v1.2.3",
		Realm:    "example.com",
		URLs:     []string{"stun:turn.example.com:3478", "turn:turn.example.com:3478?transport=udp"},
		Stats:    func() engine.Snapshot { return st },
		Draining: func() bool { return draining },
		Now:      func() time.Time { return now },
	})
	res, body := do(t, http.MethodGet, srv.URL+StatusPath, map[string]string{"Origin": "https://elsewhere.example"})
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" ||
		res.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET %s: %d %v", StatusPath, res.StatusCode, res.Header)
	}
	checkSecure(t, "GET "+StatusPath, res)
	want := `{"version":"v1.2.3","realm":"example.com","urls":["stun:turn.example.com:3478","turn:turn.example.com:3478?transport=udp"],` +
		`"allocations":3,"relayed":{"packets":30,"bytes":4000,"to_peer_packets":10,"from_peer_packets":20,"to_peer_bytes":1000,"from_peer_bytes":3000},` +
		`"draining":false,"time":"2026-05-04T03:02:01.987Z"}` + "\n"
	if body != want {
		t.Fatalf("status\n%s\nwant\n%s", body, want)
	}
	draining = true
	st.Allocations = 0
	_, body = do(t, http.MethodGet, srv.URL+StatusPath, nil)
	var got Status
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Draining || got.Allocations != 0 {
		t.Fatalf("status %+v: want draining with no allocation", got)
	}
}

// TestStatusEmpty: without counters the status is all zeros, urls an
// empty list.
func TestStatusEmpty(t *testing.T) {
	srv := newServer(t, Options{})
	_, body := do(t, http.MethodGet, srv.URL+StatusPath, nil)
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "allocations,draining,realm,relayed,time,urls,version" {
		t.Fatalf("status fields %q", keys)
	}
	if urls, ok := m["urls"].([]any); !ok || len(urls) != 0 || m["draining"] != false || m["allocations"] != 0.0 {
		t.Fatalf("status %s", body)
	}
}
