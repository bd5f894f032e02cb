package admin

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/cluster"
)

func TestRevocationEndpoints(t *testing.T) {
	revs := cluster.NewRevocations(cluster.RevocationOptions{Node: "solo"})
	h, err := New(Options{Token: token, Table: &table{}, Revoker: revs, MaxTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	future := fmt.Sprintf("%d:carol", time.Now().Add(time.Hour).Unix())
	past := fmt.Sprintf("%d:carol", time.Now().Add(-time.Hour).Unix())
	tests := []struct {
		name, method, path, body string
		code                     int
		want                     string
	}{
		{"empty list", "GET", "revocations", "", 200, `"count": 0`},
		{"revoke a user", "POST", "revocations", `{"user":"alice","reason":"leaked"}`, 201, `"kind": "user"`},
		{"revoke a credential", "POST", "revocations", `{"username":"` + future + `"}`, 201, `"kind": "username"`},
		{"an expired credential", "POST", "revocations", `{"username":"` + past + `"}`, 409, "already expired"},
		{"both", "POST", "revocations", `{"user":"a","username":"b"}`, 400, "exactly one"},
		{"neither", "POST", "revocations", `{"reason":"x"}`, 400, "exactly one"},
		{"unknown field", "POST", "revocations", `{"group":"x"}`, 400, "body must be"},
		{"not json", "POST", "revocations", `alice`, 400, "body must be"},
		{"control character", "POST", "revocations", `{"user":"a\u0001"}`, 400, "printable"},
		{"listed", "GET", "revocations", "", 200, `"count": 2`},
		{"lift", "DELETE", "revocations?user=alice", "", 200, `"lifted": true`},
		{"lift again", "DELETE", "revocations?user=alice", "", 404, "no revocation"},
		{"lift without a name", "DELETE", "revocations", "", 400, "exactly one"},
		{"listed after", "GET", "revocations", "", 200, `"count": 1`},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+Prefix+tt.path, strings.NewReader(tt.body))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tt.code || !strings.Contains(string(b), tt.want) {
			t.Errorf("%s: %d %s, want %d with %q", tt.name, res.StatusCode, b, tt.code, tt.want)
		}
	}
	// A REST credential's revocation lasts until the credential expires; a
	// user's until auth.max-ttl has passed.
	for _, r := range revs.List() {
		if r.Kind == cluster.RevokeUsername && r.Until.Unix() != time.Now().Add(time.Hour).Unix() && r.Until.Unix() != time.Now().Add(time.Hour).Unix()-1 {
			t.Errorf("credential revoked until %v", r.Until)
		}
	}

	// Without a revoker the endpoints do not exist.
	h2, _ := New(Options{Token: token, Table: &table{}})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", Prefix+"revocations", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	h2.ServeHTTP(rec, req)
	if rec.Code != 404 {
		t.Errorf("revocations without a revoker: %d", rec.Code)
	}
}
