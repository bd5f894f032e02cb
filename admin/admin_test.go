package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/relay"
)

const token = "admin-token-0123456789"

// liveAllocation opens a loopback UDP socket, registers it with tr as a
// relay socket and announces its allocation for user, as pion would.
func liveAllocation(t *testing.T, tr *relay.Tracker, user string) (net.PacketConn, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	wrapped := tr.WrapPacketConn(pc, pc.LocalAddr())
	client := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	tr.Events().OnAllocationCreated(client, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}, "UDP", user, "ferry.test", pc.LocalAddr(), 0)
	return wrapped, pc.LocalAddr().String()
}

func closedSocket(pc net.PacketConn) bool {
	_ = pc.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, _, err := pc.ReadFrom(make([]byte, 10))
	return errors.Is(err, net.ErrClosed)
}

func TestAdminAPI(t *testing.T) {
	tr := relay.NewTracker(relay.TrackerOptions{})
	h, err := New(Options{Token: token, Tracker: tr})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	alice1, relay1 := liveAllocation(t, tr, "alice")
	bob, relayBob := liveAllocation(t, tr, "bob")
	alice2, _ := liveAllocation(t, tr, "alice")

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
	if !closedSocket(bob) || !closedSocket(alice1) || !closedSocket(alice2) {
		t.Fatal("closed allocations' relay sockets are still open")
	}
	if s := tr.Stats(); s.Ended[relay.EndAdmin] != 3 {
		t.Fatalf("ended %v, want 3 by admin", s.Ended)
	}
}

func TestAdminListJSON(t *testing.T) {
	tr := relay.NewTracker(relay.TrackerOptions{})
	_, relayAddr := liveAllocation(t, tr, "carol")
	h, _ := New(Options{Token: token, Tracker: tr})
	req := httptest.NewRequest("GET", Prefix+"allocations", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var got struct {
		Count       int                `json:"count"`
		Allocations []relay.Allocation `json:"allocations"`
	}
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
	tr := relay.NewTracker(relay.TrackerOptions{})
	_ = tr
	if _, err := New(Options{Token: token}); err == nil {
		t.Error("New without a tracker accepted")
	}
}

// TestSetToken: a reload replaces the token for the next request, and an
// empty token turns the API off (also from the start).
func TestSetToken(t *testing.T) {
	tr := relay.NewTracker(relay.TrackerOptions{})
	h, err := New(Options{Tracker: tr})
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
