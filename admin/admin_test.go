package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/engine"
)

const token = "admin-token-0123456789"

// table is an allocation table in memory, as the engine's shards would
// list and close them.
type table struct {
	mu    sync.Mutex
	all   []engine.AllocationInfo
	ended int
}

func (tb *table) add(user, relay string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.all = append(tb.all, engine.AllocationInfo{ID: uint64(len(tb.all) + 1), User: user, Username: user,
		Relay: relay, RelayTransport: "udp", Client: "127.0.0.1:40000", Transport: "udp", Created: time.Unix(1_800_000_000, 0)})
}

func (tb *table) List() []engine.AllocationInfo {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]engine.AllocationInfo(nil), tb.all...)
}

func (tb *table) closeWhere(match func(engine.AllocationInfo) bool) int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	kept := tb.all[:0]
	n := 0
	for _, a := range tb.all {
		if match(a) {
			n++
			continue
		}
		kept = append(kept, a)
	}
	tb.all = kept
	tb.ended += n
	return n
}

func (tb *table) CloseRelay(relay netip.AddrPort, transport string) int {
	return tb.closeWhere(func(a engine.AllocationInfo) bool {
		return a.Relay == relay.String() && (transport == "" || transport == a.RelayTransport)
	})
}

func (tb *table) CloseUser(user string) int {
	return tb.closeWhere(func(a engine.AllocationInfo) bool { return a.User == user })
}

func TestAdminAPI(t *testing.T) {
	tr := &table{}
	h, err := New(Options{Token: token, Table: tr})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	relay1, relayBob := "127.0.0.1:50001", "127.0.0.1:50002"
	tr.add("alice", relay1)
	tr.add("bob", relayBob)
	tr.add("alice", "127.0.0.1:50003")

	tests := []struct {
		name, method, path, auth string
		code                     int
		body                     string // substring of the response body
	}{
		{"no token", "GET", "allocations", "", 401, "admin token"},
		{"wrong token", "GET", "allocations", "Bearer nope-nope-nope-nope", 401, "admin token"},
		{"token as basic", "GET", "allocations", "Basic " + token, 401, "admin token"},
		{"token prefix", "GET", "allocations", "Bearer " + token[:10], 401, "admin token"},
		{"list", "GET", "allocations", "Bearer " + token, 200, `"count": 3`},
		{"list names bob", "GET", "allocations", "bearer " + token, 200, `"relay": "` + relayBob + `"`},
		{"list this node", "GET", "allocations?scope=node", "Bearer " + token, 200, `"count": 3`},
		{"list the cluster without one", "GET", "allocations?scope=cluster", "Bearer " + token, 400, "needs a cluster"},
		{"unknown scope", "GET", "allocations?scope=world", "Bearer " + token, 400, "not node or cluster"},
		{"close across no cluster", "DELETE", "users/alice/allocations?scope=cluster", "Bearer " + token, 400, "cluster.redis"},
		{"wrong method", "POST", "allocations", "Bearer " + token, 405, ""},
		{"unknown path", "GET", "nothing", "Bearer " + token, 404, ""},
		{"bad relay", "DELETE", "allocations/nope", "Bearer " + token, 400, "not IP:PORT"},
		{"bad transport", "DELETE", "allocations/" + relay1 + "?transport=sctp", "Bearer " + token, 400, "not udp or tcp"},
		{"unknown relay", "DELETE", "allocations/127.0.0.1:1", "Bearer " + token, 404, "no live allocation"},
		{"close bob's without token", "DELETE", "allocations/" + relayBob, "", 401, ""},
		{"close bob's", "DELETE", "allocations/" + relayBob + "?transport=udp", "Bearer " + token, 200, `"closed": 1`},
		{"close bob's again", "DELETE", "allocations/" + relayBob, "Bearer " + token, 404, ""},
		{"close alice's", "DELETE", "users/alice/allocations", "Bearer " + token, 200, `"closed": 2`},
		{"list empty", "GET", "allocations", "Bearer " + token, 200, `"count": 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+Prefix+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != tt.code || !strings.Contains(string(body), tt.body) {
				t.Fatalf("%s %s: %d %s, want %d with %q", tt.method, tt.path, res.StatusCode, body, tt.code, tt.body)
			}
			if tt.code == 401 && res.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if tr.ended != 3 || len(tr.List()) != 0 {
		t.Fatalf("ended %d, left %d; want 3 closed, none left", tr.ended, len(tr.List()))
	}
}

func TestAdminListJSON(t *testing.T) {
	tr := &table{}
	relayAddr := "127.0.0.1:50001"
	tr.add("carol", relayAddr)
	h, _ := New(Options{Token: token, Table: tr})
	req := httptest.NewRequest("GET", Prefix+"allocations", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var got AllocationList
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if got.Count != 1 || got.Allocations[0].User != "carol" || got.Allocations[0].Relay != relayAddr ||
		got.Allocations[0].Client != "127.0.0.1:40000" || got.Allocations[0].Transport != "udp" {
		t.Fatalf("listed %+v", got)
	}
	if rec.Header().Get("Cache-Control") != "no-store" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", rec.Header())
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := New(Options{Token: token}); err == nil {
		t.Error("New without a table accepted")
	}
}

// TestSetToken: a reload replaces the token for the next request, and an
// empty token turns the API off (also from the start).
func TestSetToken(t *testing.T) {
	h, err := New(Options{Table: &table{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	const rotated = "rotated-admin-token-0123456789"
	get := func(auth string) int {
		req, _ := http.NewRequest("GET", srv.URL+Prefix+"allocations", nil)
		req.Header.Set("Authorization", "Bearer "+auth)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		return res.StatusCode
	}
	steps := []struct {
		name     string
		set      *string
		auth     string
		wantCode int
	}{
		{"off from the start", nil, token, 404},
		{"turned on", ptr(token), token, 200},
		{"old token before", nil, token, 200},
		{"new token before", nil, rotated, 401},
		{"old token after rotation", ptr(rotated), token, 401},
		{"new token after rotation", nil, rotated, 200},
		{"turned off", ptr(""), rotated, 404},
		{"turned on again", ptr(token), token, 200},
	}
	for _, s := range steps {
		if s.set != nil {
			h.SetToken(*s.set)
		}
		if got := get(s.auth); got != s.wantCode {
			t.Fatalf("%s: %d, want %d", s.name, got, s.wantCode)
		}
	}
}

func ptr(s string) *string { return &s }
