package testpage

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/ferryrtc/ferry/engine"
)

// Paths the page is served at.
const (
	// Page is the test page.
	Page = "/"
	// Assets is the prefix of the page's script and style sheet.
	Assets = "/ui/"
	// StatusPath is the status endpoint the page polls.
	StatusPath = "/v1/status"
)

// CSP is the Content-Security-Policy of every answer: scripts, styles and
// connections from the page's own origin only, no inline script or style,
// no plugins, frames or form posts.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed ui
var files embed.FS

// Files returns the page's files: ui/index.html, ui/app.js, ui/app.css.
// Served as they are from another origin, the page tests that origin's
// access to a ferry's credentials API (http.cors-origins).
func Files() fs.FS { return files }

// Options is what the status endpoint reports.
type Options struct {
	// Version is ferry's version.
	Version string
	// Realm is the long-term credential realm.
	Realm string
	// URLs are the stun:, turn: and turns: URLs of ferry's listeners as
	// the credentials API hands them out (public host form).
	URLs []string
	// Stats returns the engine's counters (dataplane.Server.Stats); nil
	// reports zeros.
	Stats func() engine.Snapshot
	// Draining reports whether ferry drains; nil: never.
	Draining func() bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Status is the body of GET /v1/status. It holds nothing secret: no user
// name, credential, key or client address.
type Status struct {
	Version     string    `json:"version"`
	Realm       string    `json:"realm"`
	URLs        []string  `json:"urls"`
	Allocations int       `json:"allocations"`
	Relayed     Relayed   `json:"relayed"`
	Draining    bool      `json:"draining"`
	Time        time.Time `json:"time"`
}

// Relayed is the relayed traffic since ferry started, as in
// ferry_relay_packets_total and ferry_relay_bytes_total.
type Relayed struct {
	Packets         uint64 `json:"packets"`
	Bytes           uint64 `json:"bytes"`
	ToPeerPackets   uint64 `json:"to_peer_packets"`
	FromPeerPackets uint64 `json:"from_peer_packets"`
	ToPeerBytes     uint64 `json:"to_peer_bytes"`
	FromPeerBytes   uint64 `json:"from_peer_bytes"`
}

// asset is an embedded file ready to serve.
type asset struct {
	name, contentType, etag string
	body                    []byte
}

// Mount registers the page (GET /), its assets (GET /ui/...) and GET
// /v1/status on mux. HEAD is answered as GET; other methods get 405 from
// mux.
func Mount(mux *http.ServeMux, o Options) {
	if o.Now == nil {
		o.Now = time.Now
	}
	index := load("ui/index.html", "text/html; charset=utf-8")
	assets := map[string]*asset{
		"app.js":  load("ui/app.js", "text/javascript; charset=utf-8"),
		"app.css": load("ui/app.css", "text/css; charset=utf-8"),
	}
	mux.HandleFunc("GET "+Page+"{$}", func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, index)
	})
	mux.HandleFunc("GET "+Assets+"{name}", func(w http.ResponseWriter, r *http.Request) {
		a := assets[r.PathValue("name")]
		if a == nil {
			secure(w.Header())
			http.NotFound(w, r)
			return
		}
		serve(w, r, a)
	})
	mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		secure(h)
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(status(o))
	})
}

// status reads the counters now.
func status(o Options) Status {
	var st engine.Snapshot
	if o.Stats != nil {
		st = o.Stats()
	}
	urls := o.URLs
	if urls == nil {
		urls = []string{}
	}
	return Status{
		Version:     o.Version,
		Realm:       o.Realm,
		URLs:        urls,
		Allocations: st.Allocations,
		Relayed: Relayed{
			Packets:         st.ToPeerPackets + st.FromPeerPackets,
			Bytes:           st.ToPeerBytes + st.FromPeerBytes,
			ToPeerPackets:   st.ToPeerPackets,
			FromPeerPackets: st.FromPeerPackets,
			ToPeerBytes:     st.ToPeerBytes,
			FromPeerBytes:   st.FromPeerBytes,
		},
		Draining: o.Draining != nil && o.Draining(),
		Time:     o.Now().UTC().Truncate(time.Millisecond),
	}
}

// load reads an embedded file; a missing one is a build mistake.
func load(name, contentType string) *asset {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("testpage: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return &asset{name: path.Base(name), contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, body: b}
}

// serve answers GET and HEAD for a (conditional requests by ETag).
func serve(w http.ResponseWriter, r *http.Request, a *asset) {
	h := w.Header()
	secure(h)
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// secure sets the headers every answer carries.
func secure(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}
