package auth

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/pion/turn/v5"
)

func TestNewSnapshotErrors(t *testing.T) {
	const pw = "hunter2-very-secret"
	tests := []struct {
		name    string
		realm   string
		users   []string
		secrets []string
		wantIn  string // substring the error must name
	}{
		{"empty realm", "", nil, nil, "realm"},
		{"no equals", testRealm, []string{pw}, nil, "entry #1"},
		{"empty name", testRealm, []string{"=" + pw}, nil, "entry #1"},
		{"empty password", testRealm, []string{"alice="}, nil, `"alice"`},
		{"colon in name", testRealm, []string{"al:ice=" + pw}, nil, `"al:ice"`},
		{"space in name", testRealm, []string{"al ice=" + pw}, nil, `"al ice"`},
		{"duplicate", testRealm, []string{"alice=" + pw, "alice=" + pw + "x"}, nil, `"alice"`},
		{"short key", testRealm, []string{"alice=0x" + strings.Repeat("a", 30)}, nil, `"alice"`},
		{"non-hex key", testRealm, []string{"alice=0x" + strings.Repeat("g", 32)}, nil, `"alice"`},
		{"empty secret", testRealm, nil, []string{pw, ""}, "secret #2"},
		{"repeated secret", testRealm, nil, []string{pw, "other", pw}, "secret #3 repeats secret #1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSnapshot(tc.realm, tc.users, tc.secrets)
			if err == nil {
				t.Fatalf("NewSnapshot = %v, want error", s)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantIn) {
				t.Errorf("error %q does not name %q", msg, tc.wantIn)
			}
			if strings.Contains(msg, pw) || strings.Contains(msg, strings.Repeat("a", 30)) {
				t.Errorf("error %q echoes a password, key or secret", msg)
			}
		})
	}
}

func TestNewSnapshotKeys(t *testing.T) {
	want := turn.GenerateAuthKey("alice", testRealm, "pw")
	hexKey := hex.EncodeToString(want)
	tests := []struct {
		name  string
		entry string
	}{
		{"password", "alice=pw"},
		{"0x key", "alice=0x" + hexKey},
		{"0x key upper case", "alice=0x" + strings.ToUpper(hexKey)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSnapshot(t, []string{tc.entry}, nil)
			got, ok := s.userKey("alice")
			if !ok || !bytes.Equal(got, want) {
				t.Fatalf("key = %x, %v; want %x", got, ok, want)
			}
		})
	}
}

func TestSnapshotAccessors(t *testing.T) {
	empty := mustSnapshot(t, nil, nil)
	if empty.HasSecrets() || empty.Realm() != testRealm {
		t.Errorf("empty snapshot: HasSecrets=%v Realm=%q", empty.HasSecrets(), empty.Realm())
	}
	s := mustSnapshot(t, []string{"alice=pw-alice"}, []string{secretA})
	if !s.HasSecrets() {
		t.Error("HasSecrets = false with one secret")
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("loaded", "auth", s)
	for _, out := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%+v", s), logged.String()} {
		if strings.Contains(out, "pw-alice") || strings.Contains(out, secretA) {
			t.Errorf("%q reveals a credential", out)
		}
		if !strings.Contains(out, testRealm) {
			t.Errorf("%q does not name the realm", out)
		}
	}
}

func TestDiff(t *testing.T) {
	snap := func(realm string, users, secrets []string) *Snapshot {
		s, err := NewSnapshot(realm, users, secrets)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := snap(testRealm, []string{"a=1", "b=2"}, []string{secretA, secretB})
	tests := []struct {
		name     string
		old, new *Snapshot
		want     string
	}{
		{"same", base, snap(testRealm, []string{"a=1", "b=2"}, []string{secretA, secretB}),
			"users +0 -0 ~0, secrets 2->2 +0 -0"},
		{"user added", base, snap(testRealm, []string{"a=1", "b=2", "c=3"}, []string{secretA, secretB}),
			"users +1 -0 ~0, secrets 2->2 +0 -0"},
		{"user removed and password changed", base, snap(testRealm, []string{"a=9"}, []string{secretA, secretB}),
			"users +0 -1 ~1, secrets 2->2 +0 -0"},
		{"secret added", base, snap(testRealm, []string{"a=1", "b=2"}, []string{secretA, secretB, secretC}),
			"users +0 -0 ~0, secrets 2->3 +1 -0"},
		{"rotated", base, snap(testRealm, []string{"a=1", "b=2"}, []string{secretC, secretA}),
			"users +0 -0 ~0, secrets 2->2 +1 -1, signing secret changed"},
		{"realm changed", base, snap("other", []string{"a=1", "b=2"}, []string{secretA, secretB}),
			"users +0 -0 ~2, secrets 2->2 +0 -0, realm changed"},
		{"from nil", nil, base, "users +2 -0 ~0, secrets 0->2 +2 -0, realm changed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Diff(tc.old, tc.new)
			if got != tc.want {
				t.Errorf("Diff = %q, want %q", got, tc.want)
			}
			for _, secret := range []string{secretA, secretB, secretC} {
				if strings.Contains(got, secret) {
					t.Errorf("Diff %q reveals a secret", got)
				}
			}
		})
	}
}
