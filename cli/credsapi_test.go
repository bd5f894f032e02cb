package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/admin"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/internal/testutil"
)

const (
	apiKey1 = "key1-0123456789abcdef"
	apiKey2 = "key2-0123456789abcdef"
)

// credsConfig is a serve configuration on 127.0.0.1 with the credentials API.
func credsConfig(secrets, keys []string, adminToken ...string) string {
	admin := ""
	if len(adminToken) > 0 {
		admin = "  admin-token: " + adminToken[0] + "\n"
	}
	return fmt.Sprintf(`realm: ferry.test
listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
relay:
  ip: [127.0.0.1]
auth:
  secrets: [%s]
log:
  level: debug
http:
  listen: 127.0.0.1:0
  api-keys: [%s]
%s`, strings.Join(secrets, ", "), strings.Join(keys, ", "), admin)
}

var httpAddrRE = regexp.MustCompile(`msg="http listening" addr=(\S+)`)

// postCreds calls the credentials API with key and returns the status and,
// on 200, the credential.
func postCreds(t *testing.T, base, key string) (int, creds.Credential) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/credentials?user=alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/credentials: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var c creds.Credential
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
	}
	return resp.StatusCode, c
}

// TestServeCredentialsAPIReload runs `ferry serve` with the credentials API,
// then rotates the API key and the REST secret with SIGHUP, and turns the
// admin API on, rotates its token and turns it off again.
func TestServeCredentialsAPIReload(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	path := filepath.Join(dir, "ferry.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(credsConfig([]string{"secret-one"}, []string{apiKey1}))

	sigs := make(chan os.Signal, 1)
	e, _, stderr := testEnv(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, e, []string{"serve", "--config", path}) }()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d", code)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s of its context ending")
		}
		t.Logf("ferry log:\n%s", stderr)
	}()

	var base string
	testutil.WaitFor(t, 10*time.Second, "the http listener", func() bool {
		if m := httpAddrRE.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
			return true
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, stderr)
		default:
		}
		return false
	})

	code, c := postCreds(t, base, apiKey1)
	if code != http.StatusOK {
		t.Fatalf("key1 before reload: status %d", code)
	}
	if c.Credential != testutil.RESTPassword("secret-one", c.Username) || !strings.HasSuffix(c.Username, ":alice") {
		t.Fatalf("credential %+v not signed with secret-one for alice", c)
	}
	udp := regexp.MustCompile(`^turn:127\.0\.0\.1:[1-9][0-9]*\?transport=udp$`)
	if len(c.ICEServers) != 2 || !udp.MatchString(c.ICEServers[1].URLs[0]) {
		t.Fatalf("iceServers %+v do not name the bound UDP listener", c.ICEServers)
	}
	if code, _ := postCreds(t, base, apiKey2); code != http.StatusUnauthorized {
		t.Fatalf("key2 before reload: status %d, want 401", code)
	}
	if code := adminList(t, base, adminToken); code != http.StatusNotFound {
		t.Fatalf("admin API without a token: status %d, want 404", code)
	}

	// Rotate: key2 replaces key1, secret-two signs, secret-one still listed;
	// the admin API gets a token.
	write(credsConfig([]string{"secret-two", "secret-one"}, []string{apiKey2}, adminToken))
	sigs <- syscall.SIGHUP
	testutil.WaitFor(t, 10*time.Second, "key2 to be accepted after SIGHUP", func() bool {
		code, _ := postCreds(t, base, apiKey2)
		return code == http.StatusOK
	})
	if code, _ := postCreds(t, base, apiKey1); code != http.StatusUnauthorized {
		t.Fatalf("key1 after reload: status %d, want 401", code)
	}
	if _, c := postCreds(t, base, apiKey2); c.Credential != testutil.RESTPassword("secret-two", c.Username) {
		t.Fatal("after reload the credential is not signed with the new first secret")
	}
	// The keys are swapped in before the reload is logged.
	testutil.WaitFor(t, 10*time.Second, "the reload log to report the key change", func() bool {
		return strings.Contains(stderr.String(), "api keys 1->1 +1 -1")
	})
	if code := adminList(t, base, adminToken); code != http.StatusOK {
		t.Fatalf("admin API after its token was set: status %d, want 200", code)
	}

	// Rotate the admin token.
	const adminToken2 = "admin-token-rotated-98765"
	write(credsConfig([]string{"secret-two", "secret-one"}, []string{apiKey2}, adminToken2))
	sigs <- syscall.SIGHUP
	testutil.WaitFor(t, 10*time.Second, "the new admin token to be accepted after SIGHUP", func() bool {
		return adminList(t, base, adminToken2) == http.StatusOK
	})
	if code := adminList(t, base, adminToken); code != http.StatusUnauthorized {
		t.Fatalf("old admin token after rotation: status %d, want 401", code)
	}
	testutil.WaitFor(t, 10*time.Second, "the reload log to report the admin token change", func() bool {
		return strings.Contains(stderr.String(), "admin_token=replaced")
	})
	if strings.Contains(stderr.String(), adminToken2) {
		t.Fatalf("reload log shows the admin token:\n%s", stderr)
	}

	// A broken configuration is refused; key2 keeps working.
	write(credsConfig([]string{"secret-two"}, []string{"short"}, adminToken2))
	sigs <- syscall.SIGHUP
	testutil.WaitFor(t, 10*time.Second, "the broken reload to be refused", func() bool {
		return strings.Contains(stderr.String(), "reload refused")
	})
	if code, _ := postCreds(t, base, apiKey2); code != http.StatusOK {
		t.Fatalf("key2 after a refused reload: status %d, want 200", code)
	}
	if code := adminList(t, base, adminToken2); code != http.StatusOK {
		t.Fatalf("admin token after a refused reload: status %d, want 200", code)
	}

	// Removing the token turns the admin API off.
	write(credsConfig([]string{"secret-two"}, []string{apiKey2}))
	sigs <- syscall.SIGHUP
	testutil.WaitFor(t, 10*time.Second, "the admin API to turn off after SIGHUP", func() bool {
		return adminList(t, base, adminToken2) == http.StatusNotFound
	})
}

// adminList calls GET /v1/admin/allocations with token and returns the
// status.
func adminList(t *testing.T, base, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+admin.Prefix+"allocations", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}
