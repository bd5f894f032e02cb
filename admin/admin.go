package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferryrtc/ferry/cluster"
	"github.com/ferryrtc/ferry/engine"
)

// Prefix is the path the admin API is mounted under.
const Prefix = "/v1/admin/"

// Options configures the admin API.
type Options struct {
	// Token is the bearer token callers must present; empty turns the API
	// off until SetToken gives it one.
	Token string
	// Table lists and closes allocations.
	Table Table
	// Revoker records revocations; nil: the revocation endpoints answer
	// 404.
	Revoker Revoker
	// MaxTTL is auth.max-ttl: how long a user's revocation must last for
	// every credential minted before it to have expired.
	MaxTTL time.Duration
	// Cluster answers ?scope=cluster across every node; nil: no cluster
	// (that scope answers 400).
	Cluster Cluster
	// Log receives one line per state-changing call; nil discards.
	Log *slog.Logger
}

// Table is the allocation table the admin API lists and closes from.
type Table interface {
	// List returns the live allocations.
	List() []engine.AllocationInfo
	// CloseRelay closes the allocations with relayed address relay;
	// transport "udp", "tcp" or "" for both. It returns how many.
	CloseRelay(relay netip.AddrPort, transport string) int
	// CloseUser closes every allocation of user and returns how many.
	CloseUser(user string) int
}

// Cluster runs admin calls on every node of the cluster
// (*cluster.Admin).
type Cluster interface {
	List(ctx context.Context) (cluster.ClusterAnswer, error)
	CloseUser(ctx context.Context, user string) (cluster.ClusterAnswer, error)
}

// AllocationList is the body of GET /v1/admin/allocations.
type AllocationList struct {
	Count       int          `json:"count"`
	Allocations []Allocation `json:"allocations"`
	// Nodes counts each node's allocations and Missing names the live
	// nodes that did not answer in time (?scope=cluster only).
	Nodes   map[string]int `json:"nodes,omitempty"`
	Missing []string       `json:"missing,omitempty"`
}

// Allocation is one listed allocation; Node names its node
// (?scope=cluster only).
type Allocation struct {
	Node string `json:"node,omitempty"`
	engine.AllocationInfo
}

// Closed is the body of the DELETE calls; Nodes and Missing as in
// AllocationList.
type Closed struct {
	Closed  int            `json:"closed"`
	Nodes   map[string]int `json:"nodes,omitempty"`
	Missing []string       `json:"missing,omitempty"`
}

// Handler serves the admin API. Its token can be replaced while it serves
// (SetToken, on a configuration reload).
type Handler struct {
	tokenHash atomic.Pointer[[sha256.Size]byte] // nil: the API is turned off
	table     Table
	cluster   Cluster
	revoker   Revoker
	maxTTL    time.Duration
	log       *slog.Logger
	mux       *http.ServeMux
}

// New returns the admin API handler for every path under Prefix. It
// refuses to build without a tracker.
func New(o Options) (*Handler, error) {
	if o.Table == nil {
		return nil, errors.New("admin: no allocation table")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = 24 * time.Hour
	}
	h := &Handler{table: o.Table, cluster: o.Cluster, revoker: o.Revoker, maxTTL: o.MaxTTL, log: o.Log, mux: http.NewServeMux()}
	h.SetToken(o.Token)
	h.mux.HandleFunc("GET "+Prefix+"allocations", h.list)
	h.mux.HandleFunc("DELETE "+Prefix+"allocations/{relay}", h.closeOne)
	h.mux.HandleFunc("DELETE "+Prefix+"users/{user}/allocations", h.closeUser)
	if o.Revoker != nil {
		h.mux.HandleFunc("GET "+Prefix+"revocations", h.revocations)
		h.mux.HandleFunc("POST "+Prefix+"revocations", h.revoke)
		h.mux.HandleFunc("DELETE "+Prefix+"revocations", h.lift)
	}
	return h, nil
}

// SetToken replaces the bearer token for the requests that follow. An
// empty token turns the API off: every path under Prefix then answers 404,
// as when ferry starts without a token.
func (h *Handler) SetToken(token string) {
	if token == "" {
		h.tokenHash.Store(nil)
		return
	}
	sum := sha256.Sum256([]byte(token))
	h.tokenHash.Store(&sum)
}

// ServeHTTP checks the bearer token, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	want := h.tokenHash.Load()
	if want == nil {
		writeError(w, http.StatusNotFound, "the admin API is off (http.admin-token is empty)")
		return
	}
	if !authorized(r, want) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ferry-admin"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong admin token (Authorization: Bearer <http.admin-token>)")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// authorized compares the presented token with the configured one in
// constant time: both are hashed first, so neither content nor length
// leaks through timing.
func authorized(r *http.Request, want *[sha256.Size]byte) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// clusterScope reads ?scope=: false for this node (absent or "node"),
// true for the cluster; false and an answer written when it cannot be.
func (h *Handler) clusterScope(w http.ResponseWriter, r *http.Request) (cluster, ok bool) {
	switch s := r.URL.Query().Get("scope"); s {
	case "", "node":
		return false, true
	case "cluster":
		if h.cluster == nil {
			writeError(w, http.StatusBadRequest, "scope=cluster needs a cluster (cluster.redis); this node is alone")
			return false, false
		}
		return true, true
	default:
		writeError(w, http.StatusBadRequest, "scope "+quote(s)+" is not node or cluster")
		return false, false
	}
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	all, ok := h.clusterScope(w, r)
	if !ok {
		return
	}
	out := AllocationList{Allocations: []Allocation{}}
	if all {
		ans, err := h.cluster.List(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		out.Nodes, out.Missing = map[string]int{}, ans.Missing
		for _, n := range ans.Nodes {
			out.Nodes[n.Node] = len(n.Allocations)
			for _, a := range n.Allocations {
				out.Allocations = append(out.Allocations, Allocation{Node: n.Node, AllocationInfo: a})
			}
		}
	} else {
		for _, a := range h.table.List() {
			out.Allocations = append(out.Allocations, Allocation{AllocationInfo: a})
		}
	}
	out.Count = len(out.Allocations)
	writeJSON(w, http.StatusOK, out)
}

// closeOne closes the allocation with relay address {relay}, IP:PORT as
// listed; ?transport=udp|tcp picks one when a UDP and a TCP allocation
// share the address.
func (h *Handler) closeOne(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("relay")
	ap, err := netip.ParseAddrPort(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "relay "+quote(raw)+" is not IP:PORT (IPv6 as [addr]:port) as listed by GET "+Prefix+"allocations")
		return
	}
	transport := r.URL.Query().Get("transport")
	switch transport {
	case "", "udp", "tcp":
	default:
		writeError(w, http.StatusBadRequest, "transport "+quote(transport)+" is not udp or tcp")
		return
	}
	n := h.table.CloseRelay(ap, transport)
	if n == 0 {
		writeError(w, http.StatusNotFound, "no live allocation with relay address "+ap.String())
		return
	}
	h.log.Info("admin: allocation closed", "relay", ap, "transport", transport, "closed", n, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, Closed{Closed: n})
}

// closeUser closes every allocation of {user}; 0 closed is not an error.
func (h *Handler) closeUser(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	all, ok := h.clusterScope(w, r)
	if !ok {
		return
	}
	if all {
		ans, err := h.cluster.CloseUser(r.Context(), user)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		out := Closed{Nodes: map[string]int{}, Missing: ans.Missing}
		for _, n := range ans.Nodes {
			out.Nodes[n.Node] = n.Closed
			out.Closed += n.Closed
		}
		h.log.Info("admin: user's allocations closed across the cluster", "user", user, "closed", out.Closed, "missing", ans.Missing, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, out)
		return
	}
	n := h.table.CloseUser(user)
	h.log.Info("admin: user's allocations closed", "user", user, "closed", n, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, Closed{Closed: n})
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
