package auth

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

func TestParseRESTUsername(t *testing.T) {
	tests := []struct {
		username   string
		wantOK     bool
		wantExpiry int64
		wantUserID string
	}{
		{"1700000600", true, 1700000600, "1700000600"},
		{"1700000600:carol", true, 1700000600, "carol"},
		{"0:x", true, 0, "x"},
		{"001:x", true, 1, "x"},
		{"9223372036854775807:max", true, 9223372036854775807, "max"},
		{"1:a:b", true, 1, "a:b"},
		{"abc", false, 0, ""},
		{"-1", false, 0, ""},
		{"+1", false, 0, ""},
		{" 1", false, 0, ""},
		{"1 ", false, 0, ""},
		{"0x10", false, 0, ""},
		{"1e9", false, 0, ""},
		{"99999999999999999999", false, 0, ""},
		{"9223372036854775808", false, 0, ""},
		{":x", false, 0, ""},
		{"1700000600:", false, 0, ""},
		{"", false, 0, ""},
		{":", false, 0, ""},
		{"١٢٣", false, 0, ""}, // non-ASCII digits
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.username), func(t *testing.T) {
			expiry, userID, err := parseRESTUsername(tc.username)
			if (err == nil) != tc.wantOK {
				t.Fatalf("parseRESTUsername(%q) err = %v, want ok=%v", tc.username, err, tc.wantOK)
			}
			if expiry != tc.wantExpiry || userID != tc.wantUserID {
				t.Errorf("parseRESTUsername(%q) = %d, %q; want %d, %q",
					tc.username, expiry, userID, tc.wantExpiry, tc.wantUserID)
			}
		})
	}
}

// TestMintMatchesPion checks Mint against pion's own generators: same
// username (expiry and user) must give the same password.
func TestMintMatchesPion(t *testing.T) {
	tests := []struct {
		name string
		user string
		gen  func(secret string) (string, string, error)
	}{
		{"with user", "carol", func(secret string) (string, string, error) {
			return turn.GenerateLongTermTURNRESTCredentials(secret, "carol", time.Hour)
		}},
		{"without user", "", func(secret string) (string, string, error) {
			return turn.GenerateLongTermCredentials(secret, time.Hour)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantUser, wantPass, err := tc.gen(secretA)
			if err != nil {
				t.Fatal(err)
			}
			ts, _, _ := strings.Cut(wantUser, ":")
			expiry, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			gotUser, gotPass := Mint(secretA, tc.user, 0, time.Unix(expiry, 0))
			if gotUser != wantUser || gotPass != wantPass {
				t.Errorf("Mint = %q, %q; pion = %q, %q", gotUser, gotPass, wantUser, wantPass)
			}
		})
	}
}

func TestSnapshotMint(t *testing.T) {
	s := mustSnapshot(t, nil, []string{secretA, secretB})
	username, password, err := s.Mint("carol", 10*time.Minute, t0())
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.FormatInt(t0Unix+600, 10) + ":carol"; username != want {
		t.Errorf("username = %q, want %q", username, want)
	}
	if _, want := Mint(secretA, "carol", 10*time.Minute, t0()); password != want {
		t.Errorf("password not signed with the first secret")
	}
	// Round trip through Credential: the first key is the one the minted
	// password gives.
	c, _, ok := s.Credential(username)
	want := stunwire.LongTermKey(username, testRealm, password)
	if !ok || c.User != "carol" || !bytes.Equal(c.Keys[0], want[:]) {
		t.Fatalf("Credential = %+v, %v; want carol with the minted password's key first", c, ok)
	}

	errTests := []struct {
		name string
		snap *Snapshot
		user string
		ttl  time.Duration
	}{
		{"no secret", mustSnapshot(t, []string{"a=b"}, nil), "carol", time.Minute},
		{"colon in user", s, "ca:rol", time.Minute},
		{"zero ttl", s, "carol", 0},
		{"negative ttl", s, "carol", -time.Minute},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			if u, p, err := tc.snap.Mint(tc.user, tc.ttl, t0()); err == nil {
				t.Errorf("Mint = %q, %q; want error", u, p)
			}
		})
	}
}
