package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/internal/testutil"
)

type cliEnv struct {
	env    *env
	stdout *testutil.LockedBuffer
	stderr *testutil.LockedBuffer
	sigs   chan os.Signal
}

func newCLIEnv(environ ...string) *cliEnv {
	te := &cliEnv{stdout: &testutil.LockedBuffer{}, stderr: &testutil.LockedBuffer{}, sigs: make(chan os.Signal, 4)}
	te.env = &env{
		stdin: strings.NewReader(""), stdout: te.stdout, stderr: te.stderr,
		environ: environ,
		signals: func() (<-chan os.Signal, func()) { return te.sigs, func() {} },
	}
	return te
}

func (te *cliEnv) run(args ...string) int { return run(context.Background(), te.env, args) }

// stop sends sig to a `serve` running in te and fails t unless it exits 0
// (reported on done) within 30s.
func (te *cliEnv) stop(t *testing.T, sig os.Signal, done <-chan int) {
	t.Helper()
	te.sigs <- sig
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after %v:\n%s", code, sig, te.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop after %v", sig)
	}
}

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		wantOut  string
		wantErr  string
		mustNot  string
		yamlFile string
	}{
		{name: "defaults", args: nil, code: 0, wantOut: "configuration OK"},
		{name: "secrets redacted", args: []string{"--auth-secret", "s3cr3t", "--user", "alice=hunter2"}, code: 0,
			wantOut: "alice=<redacted>", mustNot: "hunter2"},
		{name: "bad port range", args: []string{"--relay-ports", "60000-50000"}, code: 2, wantErr: "relay.ports:"},
		{name: "port range junk", args: []string{"--relay-ports", "lots"}, code: 2, wantErr: "relay.ports:"},
		{name: "unknown transport", args: []string{"--listen", "quic://127.0.0.1:3478"}, code: 2, wantErr: "listen:"},
		{name: "missing tls key", args: []string{"--listen", "tls://127.0.0.1:5349", "--tls-cert", "c.pem"}, code: 2, wantErr: "tls.key:"},
		{name: "unknown key in file", yamlFile: "relay:\n  port: 1-2\n", code: 2, wantErr: "relay.port: unknown key"},
		{name: "file values shown", yamlFile: "realm: example.org\n", code: 0, wantOut: "realm: example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			args := append([]string{"config", "check"}, tt.args...)
			if tt.yamlFile != "" {
				path := filepath.Join(t.TempDir(), "ferry.yaml")
				if err := os.WriteFile(path, []byte(tt.yamlFile), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", path)
			}
			te := newCLIEnv()
			code := te.run(args...)
			out, errOut := te.stdout.String(), te.stderr.String()
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("stdout %q / stderr %q; want %q / %q", out, errOut, tt.wantOut, tt.wantErr)
			}
			if tt.mustNot != "" && strings.Contains(out+errOut, tt.mustNot) {
				t.Fatalf("output leaks %q", tt.mustNot)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	te := newCLIEnv()
	if code := te.run("version"); code != 0 || !strings.HasPrefix(te.stdout.String(), "ferry ") {
		t.Fatalf("exit %d, out %q", code, te.stdout.String())
	}
}

func TestVersionFormats(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "be2d87844fd99e17db1fe46afa78c200796499ee"}, {Key: "vcs.modified", Value: "false"}}
	dirty := []debug.BuildSetting{{Key: "vcs.revision", Value: "be2d87844fd99e17db1fe46afa78c200796499ee"}, {Key: "vcs.modified", Value: "true"}}
	tests := []struct {
		name, stamped string
		bi            debug.BuildInfo
		want          string
	}{
		{"stamped by the build script", "v0.4.0-3-gbe2d878", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"v0.4.0-3-gbe2d878 go1.26.8"},
		{"stamped, with VCS info", "v0.4.0-3-gbe2d878", debug.BuildInfo{GoVersion: "go1.26.8", Settings: vcs},
			"v0.4.0-3-gbe2d878 go1.26.8"}, // the revision is in it already
		{"stamped, another revision", "v0.4.0", debug.BuildInfo{GoVersion: "go1.26.8", Settings: vcs},
			"v0.4.0 (be2d87844fd9) go1.26.8"},
		{"go install of a release", "", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.4.0"}},
			"v0.4.0 go1.26.8"},
		{"go build in a checkout", "", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261130075600-be2d87844fd9+dirty"}, Settings: dirty},
			"v0.0.0-20261130075600-be2d87844fd9+dirty go1.26.8"},
		{"devel with a revision", "", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs},
			"devel (be2d87844fd9) go1.26.8"},
		{"go run", "", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"devel (no VCS revision: go run and -buildvcs=false leave it out; go build in a git checkout or docker/build.sh put it in) go1.26.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := version(tt.stamped, &tt.bi); got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCredsJSON(t *testing.T) {
	te := newCLIEnv()
	code := te.run("creds", "--auth-secret", "topsecret", "--user", "alice", "--ttl", "30m", "--json",
		"--listen", "udp://127.0.0.1:3478", "--listen", "tcp://127.0.0.1:3478", "--listen", "tls://127.0.0.1:5349",
		"--tls-cert", "c.pem", "--tls-key", "k.pem", "--public-host", "turn.example.com")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, te.stderr.String())
	}
	var c creds.Credential
	if err := json.Unmarshal([]byte(te.stdout.String()), &c); err != nil {
		t.Fatal(err)
	}
	exp, user, ok := strings.Cut(c.Username, ":")
	if !ok || user != "alice" {
		t.Fatalf("username %q", c.Username)
	}
	e, _ := strconv.ParseInt(exp, 10, 64)
	if d := time.Until(time.Unix(e, 0)); d < 29*time.Minute || d > 31*time.Minute || c.TTL != 1800 {
		t.Fatalf("expiry in %s, ttl %d; want 30m", d, c.TTL)
	}
	if want := testutil.RESTPassword("topsecret", c.Username); c.Credential != want {
		t.Fatalf("credential %q, want HMAC %q", c.Credential, want)
	}
	b, _ := json.Marshal(c.ICEServers)
	for _, u := range []string{"stun:turn.example.com:3478", "turn:turn.example.com:3478?transport=udp",
		"turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:5349?transport=tcp"} {
		if !strings.Contains(string(b), u) {
			t.Fatalf("iceServers %s lack %s", b, u)
		}
	}
}

func TestCredsWithoutSecretExits2(t *testing.T) {
	te := newCLIEnv()
	if code := te.run("creds"); code != 2 || !strings.Contains(te.stderr.String(), "auth.secrets") {
		t.Fatalf("exit %d, stderr %q", code, te.stderr.String())
	}
}

func TestCredsTTLCapped(t *testing.T) {
	te := newCLIEnv()
	if code := te.run("creds", "--auth-secret", "s", "--ttl", "100h", "--max-ttl", "2h", "--json"); code != 0 {
		t.Fatalf("exit %d: %s", code, te.stderr.String())
	}
	var c creds.Credential
	if err := json.Unmarshal([]byte(te.stdout.String()), &c); err != nil {
		t.Fatal(err)
	}
	if c.TTL != 7200 {
		t.Fatalf("ttl %d, want capped at 7200", c.TTL)
	}
}

func waitForText(t *testing.T, buf *testutil.LockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q in:\n%s", s, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeReloadAndStop(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.yaml")
	write := func(users string) {
		cfg := "realm: ferry.test\nlisten: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\nrelay:\n  ip: [127.0.0.1]\nauth:\n  users: [" + users + "]\n"
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice=one")
	te := newCLIEnv()
	done := make(chan int, 1)
	go func() { done <- te.run("serve", "--config", path, "--udp-sockets", "2") }()
	waitForText(t, te.stderr, "ferry ready")
	if strings.Contains(te.stdout.String(), "iceServers") {
		t.Fatal("printed a generated-secret banner although users are configured")
	}

	write("alice=one, bob=two")
	te.sigs <- syscall.SIGHUP
	waitForText(t, te.stderr, "configuration reloaded")
	if !strings.Contains(te.stderr.String(), "users +1") {
		t.Fatalf("reload did not report the added user:\n%s", te.stderr.String())
	}

	// A broken file is refused and the old configuration keeps serving.
	if err := os.WriteFile(path, []byte("relay:\n  ports: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	te.sigs <- syscall.SIGHUP
	waitForText(t, te.stderr, "reload refused")

	// Regression 11: a file that would leave no credential at all (here
	// an empty one) is refused too, with a line that says so.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	te.sigs <- syscall.SIGHUP
	waitForText(t, te.stderr, "no auth.users and no auth.secrets")
	if n := strings.Count(te.stderr.String(), "configuration reloaded"); n != 1 {
		t.Fatalf("%d reloads taken, want only the first:\n%s", n, te.stderr.String())
	}

	te.stop(t, syscall.SIGTERM, done)
	waitForText(t, te.stderr, "ferry stopped")
}

func TestServeEmbeddedDefaultBanner(t *testing.T) {
	te := newCLIEnv()
	done := make(chan int, 1)
	go func() {
		done <- te.run("serve", "--listen", "udp://127.0.0.1:0", "--listen", "tcp://127.0.0.1:0", "--relay-ip", "127.0.0.1")
	}()
	waitForText(t, te.stdout, "iceServers")
	out := te.stdout.String()
	var parsed struct {
		ICEServers []creds.ICEServer `json:"iceServers"`
	}
	start := strings.Index(out, "{\n  \"iceServers\"")
	end := strings.LastIndex(out, "}")
	if start < 0 || end < start {
		t.Fatalf("no JSON in banner:\n%s", out)
	}
	if err := json.Unmarshal([]byte(out[start:end+1]), &parsed); err != nil {
		t.Fatalf("banner JSON: %v\n%s", err, out)
	}
	if len(parsed.ICEServers) != 2 || parsed.ICEServers[1].Username == "" || parsed.ICEServers[1].Credential == "" {
		t.Fatalf("iceServers %+v", parsed.ICEServers)
	}
	// No directory to save the secret in (an empty environment): the
	// banner shows it, in a ferry creds command.
	if !strings.Contains(out, "could not be saved") || !strings.Contains(out, "ferry creds --auth-secret ") {
		t.Fatalf("the banner neither saves nor shows the secret:\n%s", out)
	}
	te.sigs <- syscall.SIGINT
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestServeSavesRunSecret: the generated secret is saved, readable by the
// user only, where the banner says; ferry creds mints with it a credential
// the running server accepts.
func TestServeSavesRunSecret(t *testing.T) {
	dir := t.TempDir()
	te := newCLIEnv("XDG_RUNTIME_DIR=" + dir)
	done := make(chan int, 1)
	go func() {
		done <- te.run("serve", "--listen", "udp://127.0.0.1:0", "--relay-ip", "127.0.0.1", "--realm", "ferry.test")
	}()
	defer te.stop(t, syscall.SIGINT, done)
	waitForText(t, te.stdout, "iceServers")
	path := filepath.Join(dir, "ferry", "run-secret")
	if out := te.stdout.String(); !strings.Contains(out, `ferry creds --auth-secret "$(cat `+path+`)"`) {
		t.Fatalf("the banner does not name %s:\n%s", path, out)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ce := newCLIEnv()
	if code := ce.run("creds", "--auth-secret", strings.TrimSpace(string(b)), "--user", "alice", "--json"); code != 0 {
		t.Fatalf("ferry creds: exit %d: %s", code, ce.stderr)
	}
	var c creds.Credential
	if err := json.Unmarshal([]byte(ce.stdout.String()), &c); err != nil {
		t.Fatal(err)
	}
	m := udpListenRE.FindStringSubmatch(te.stderr.String())
	if m == nil {
		t.Fatalf("no UDP listener in the log:\n%s", te.stderr)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: m[1], TURNServerAddr: m[1], Conn: conn,
		Username: c.Username, Password: c.Credential, Realm: "ferry.test",
		LoggerFactory: &logging.DefaultLoggerFactory{Writer: io.Discard},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate with a credential minted from the saved secret: %v", err)
	}
	_ = relay.Close()
}

func TestServeBadConfigExits2(t *testing.T) {
	te := newCLIEnv("FERRY_RELAY_PORTS=9-1")
	if code := te.run("serve"); code != 2 || !strings.Contains(te.stderr.String(), "relay.ports") {
		t.Fatalf("exit %d, stderr %q", code, te.stderr.String())
	}
}

func TestDefaultLoops(t *testing.T) {
	for _, tc := range []struct{ cpus, want int }{{1, 1}, {2, 1}, {3, 2}, {4, 2}, {16, 8}} {
		if got := defaultLoops(tc.cpus); got != tc.want {
			t.Errorf("defaultLoops(%d) = %d, want %d", tc.cpus, got, tc.want)
		}
	}
}
