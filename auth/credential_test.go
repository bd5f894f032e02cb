package auth

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

const (
	testRealm = "ferry.test"
	secretA   = "secret-A-0123456789"
	secretB   = "secret-B-abcdefghij"
	secretC   = "secret-C-not-configured"
	t0Unix    = 1_700_000_000
)

func t0() time.Time { return time.Unix(t0Unix, 0) }

func mustSnapshot(t testing.TB, users, secrets []string) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(testRealm, users, secrets)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCredential(t *testing.T) {
	s := mustSnapshot(t, []string{"alice=wonderland", "bob=0x" + strings.Repeat("ab", 16)}, []string{"new-secret", "old-secret"})
	now := time.Unix(1_800_000_000, 0)
	rest, restPass := Mint("old-secret", "carol", time.Hour, now)
	anon, _ := Mint("new-secret", "", time.Hour, now)
	alice := stunwire.LongTermKey("alice", testRealm, "wonderland")
	tests := []struct {
		name, username string
		ok             bool
		user           string
		keys           int
		rest           bool
	}{
		{"static user", "alice", true, "alice", 1, false},
		{"static key in 0x form", "bob", true, "bob", 1, false},
		{"REST credential", rest, true, "carol", 2, true},
		// Regression 15: REST usernames without a user part share one
		// quota user instead of each being a user of its own.
		{"REST credential without a user part", anon, true, "", 2, true},
		{"unknown user", "mallory", false, "", 0, false},
		{"not a REST username", "x:y:z", false, "", 0, false},
		{"empty user part", "1800003600:", false, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, why, ok := s.Credential(tt.username)
			if ok != tt.ok || c.User != tt.user || len(c.Keys) != tt.keys || c.REST != tt.rest {
				t.Fatalf("Credential(%q) = %+v, %q, %v", tt.username, c, why, ok)
			}
			if !ok && why == "" {
				t.Fatal("refusal without a reason")
			}
		})
	}
	c, _, _ := s.Credential("alice")
	if !bytes.Equal(c.Keys[0], alice[:]) {
		t.Fatal("static user's key is not MD5(name:realm:password)")
	}
	c, _, _ = s.Credential(rest)
	want := stunwire.LongTermKey(rest, testRealm, restPass)
	if !bytes.Equal(c.Keys[1], want[:]) || bytes.Equal(c.Keys[0], want[:]) {
		t.Fatal("REST keys are not one per secret, in order")
	}
	if c.Expiry != now.Add(time.Hour).Unix() {
		t.Fatalf("expiry %d", c.Expiry)
	}
	var empty *Snapshot
	if _, _, ok := empty.Credential("alice"); ok || !empty.Empty() {
		t.Fatal("nil snapshot has credentials")
	}
}

func TestStore(t *testing.T) {
	a := mustSnapshot(t, []string{"alice=x"}, nil)
	b := mustSnapshot(t, nil, []string{"s"})
	st := NewStore(a)
	if st.Snapshot() != a || st.Swap(b) != a || st.Snapshot() != b {
		t.Fatal("store does not swap")
	}
	if a.Empty() || b.Empty() || !mustSnapshot(t, nil, nil).Empty() {
		t.Fatal("Empty")
	}
}

func FuzzParseRESTUsername(f *testing.F) {
	for _, seed := range []string{
		"1700000600", "1700000600:carol", "0:x", "1:a:b", "abc", "-1", "+1", "1 ",
		"99999999999999999999", "9223372036854775807", "9223372036854775808",
		":x", "1:", "", ":", "١٢٣", "0x10",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, username string) {
		expiry, userID, err := parseRESTUsername(username)
		if err != nil {
			if expiry != 0 || userID != "" {
				t.Fatalf("error %v with results %d, %q", err, expiry, userID)
			}
			return
		}
		ts, user, hasUser := strings.Cut(username, ":")
		if expiry < 0 || strings.TrimLeft(ts, "0123456789") != "" {
			t.Fatalf("accepted %q: expiry %d", username, expiry)
		}
		if n, perr := strconv.ParseInt(ts, 10, 64); perr != nil || n != expiry {
			t.Fatalf("accepted %q: expiry %d, ParseInt %d, %v", username, expiry, n, perr)
		}
		switch {
		case !hasUser && userID != username:
			t.Fatalf("%q: userID %q, want the whole username", username, userID)
		case hasUser && (user == "" || userID != user):
			t.Fatalf("%q: userID %q, want %q", username, userID, user)
		}
	})
}
