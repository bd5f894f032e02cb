package cli

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// testEnv returns an env writing to buffers, with no FERRY_* variables and
// signals from sigs (nil: none ever).
func testEnv(sigs chan os.Signal) (*env, *testutil.LockedBuffer, *testutil.LockedBuffer) {
	stdout, stderr := &testutil.LockedBuffer{}, &testutil.LockedBuffer{}
	if sigs == nil {
		sigs = make(chan os.Signal)
	}
	return &env{
		stdin:   strings.NewReader(""),
		stdout:  stdout,
		stderr:  stderr,
		environ: []string{"HOME=/nonexistent"},
		signals: func() (<-chan os.Signal, func()) { return sigs, func() {} },
	}, stdout, stderr
}

func TestCredsCommand(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./ferry.yaml
	base := []string{"creds", "--auth-secret", "s3cret", "--listen", "udp://127.0.0.1:3478", "--listen", "tls://127.0.0.1:5349",
		"--tls-cert", "c.pem", "--tls-key", "k.pem", "--public-host", "turn.example.com"}
	tests := []struct {
		name    string
		args    []string
		code    int
		user    string // want username "<expiry>:user"
		ttl     int64  // want ttl (JSON runs)
		stdout  string // substring (text runs)
		stderr  string // substring (failures)
		notJSON bool
	}{
		{"user and ttl", []string{"--user", "alice", "--ttl", "2h", "--json"}, 0, "alice", 7200, "", "", false},
		{"default ttl one hour", []string{"--json"}, 0, "", 3600, "", "", false},
		{"ttl capped by max-ttl default", []string{"--ttl", "48h", "--json"}, 0, "", 86400, "", "", false},
		{"ttl capped by --max-ttl", []string{"--ttl", "2h", "--max-ttl", "30m", "--json"}, 0, "", 1800, "", "", false},
		{"text output", []string{"--user", "bob"}, 0, "", 0, "iceServers:", "", true},
		{"user with colon", []string{"--user", "a:b", "--json"}, 2, "", 0, "", "--user/--ttl", true},
		{"zero ttl", []string{"--ttl", "0s", "--json"}, 2, "", 0, "", "ttl", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, stdout, stderr := testEnv(nil)
			code := run(context.Background(), e, append(append([]string(nil), base...), tt.args...))
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.code, stderr)
			}
			if !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
				t.Fatalf("stdout %q / stderr %q, want %q / %q", stdout, stderr, tt.stdout, tt.stderr)
			}
			if tt.notJSON {
				return
			}
			var c creds.Credential
			if err := json.Unmarshal([]byte(stdout.String()), &c); err != nil {
				t.Fatalf("--json output %q: %v", stdout, err)
			}
			if c.TTL != tt.ttl {
				t.Fatalf("ttl %d, want %d", c.TTL, tt.ttl)
			}
			if tt.user != "" && !strings.HasSuffix(c.Username, ":"+tt.user) {
				t.Fatalf("username %q lacks user %q", c.Username, tt.user)
			}
			if c.Credential != testutil.RESTPassword("s3cret", c.Username) {
				t.Fatal("credential is not signed with the secret")
			}
			got := ""
			for _, s := range c.ICEServers {
				got += strings.Join(s.URLs, " ") + " "
			}
			for _, u := range []string{"stun:turn.example.com:3478", "turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp"} {
				if !strings.Contains(got, u) {
					t.Fatalf("iceServers %s lack %s", got, u)
				}
			}
		})
	}
}

func TestCredsNeedsSecret(t *testing.T) {
	t.Chdir(t.TempDir())
	e, _, stderr := testEnv(nil)
	if code := run(context.Background(), e, []string{"creds", "--json"}); code != 2 || !strings.Contains(stderr.String(), "auth.secrets") {
		t.Fatalf("exit %d, stderr %q; want 2 naming auth.secrets", code, stderr)
	}
}

// The config flag --user (auth.users) and creds' own --user share a name;
// every command must still build, and only creds gives --user its meaning.
func TestUserFlagMeanings(t *testing.T) {
	t.Chdir(t.TempDir())
	e, stdout, stderr := testEnv(nil)
	if code := run(context.Background(), e, []string{"config", "check", "--user", "bob=pw"}); code != 0 {
		t.Fatalf("config check --user bob=pw: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "bob=<redacted>") {
		t.Fatalf("config check did not take --user as auth.users:\n%s", stdout)
	}
	e, stdout, stderr = testEnv(nil)
	if code := run(context.Background(), e, []string{"creds", "--auth-secret", "s", "--user", "bob", "--json"}); code != 0 {
		t.Fatalf("creds --user bob: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout.String(), `:bob"`) {
		t.Fatalf("creds did not take --user as the credential's user:\n%s", stdout)
	}
}
