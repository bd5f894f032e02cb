package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// Settings of every test ferry.
const (
	realm  = "ferry.test"
	secret = "browser-test-secret"
	apiKey = "browser-test-api-key-0123456789"
)

// ferryBinary builds ./cmd/ferry on first use and returns its path. TestMain
// sets it; the binary lives in a directory TestMain removes.
var ferryBinary func() (string, error)

func TestMain(m *testing.M) { os.Exit(testutil.MainWithFerry(m, "browser", &ferryBinary)) }

// missing skips the test, or fails it when CI=true (testutil.Unavailable).
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	testutil.Unavailable(t, "%s (run: bash scripts/install-test-deps.sh browser)", fmt.Sprintf(format, args...))
}

// tools are the paths of what the browser tests run.
type tools struct {
	chromium, node string
}

// requireTools finds chromium, node and the npm packages in each dir of
// npmDirs (relative to the module root) that must hold package pkg.
func requireTools(t testing.TB, npm map[string]string) tools {
	t.Helper()
	var tl tools
	var err error
	if tl.chromium, err = exec.LookPath("chromium"); err != nil {
		missing(t, "chromium not found: %v", err)
	}
	if tl.node, err = exec.LookPath("node"); err != nil {
		missing(t, "node not found: %v", err)
	}
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	for dir, pkg := range npm {
		if _, err := os.Stat(filepath.Join(root, dir, "node_modules", pkg, "package.json")); err != nil {
			missing(t, "npm package %s not installed in %s (npm ci there)", pkg, dir)
		}
	}
	return tl
}

// ferry is a running `ferry serve`.
type ferry struct {
	// API is the credentials API base URL, http://127.0.0.1:PORT.
	API string
	// UDP is the TURN UDP listener, IP:PORT.
	UDP string
	// IP is the address ferry listens and relays on.
	IP string
	// RelayLo and RelayHi bound the relay port range.
	RelayLo, RelayHi int
	proc             *testutil.Process
}

var (
	readyRE = regexp.MustCompile(`msg="ferry ready".* listen=udp://([0-9.]+:\d+)`)
	httpRE  = regexp.MustCompile(`msg="http listening" addr=(127\.0\.0\.1:\d+)`)
)

// startFerry starts `ferry serve` on 127.0.0.1 with UDP, TCP and TLS
// listeners on free ports, relays on 127.0.0.1 (loopback peers allowed), the
// REST secret, and the credentials API with apiKey and the CORS origin, plus
// extra flags. t.Cleanup stops it and fails the test on a data race. In the
// offload pass (FERRY_TEST_OFFLOAD set, testutil.OffloadArgs) ferry also
// attaches its kernel fast path to that interface, which the test fails
// without.
func startFerry(t *testing.T, origin string, extra ...string) *ferry {
	t.Helper()
	return startFerryAt(t, origin, "127.0.0.1", extra...)
}

// startFerryAt is startFerry listening and relaying on ip (an address of
// this host) instead of 127.0.0.1; its HTTP API stays on 127.0.0.1.
func startFerryAt(t *testing.T, origin, ip string, extra ...string) *ferry {
	t.Helper()
	bin, err := ferryBinary()
	if err != nil {
		t.Fatalf("building ferry: %v", err)
	}
	cert := testutil.SelfSigned(t)
	lo16, hi16 := testutil.FreePortRange(t, netip.MustParseAddr(ip), 100)
	lo, hi := int(lo16), int(hi16)
	args := []string{
		"serve",
		"--listen", "udp://" + ip + ":0",
		"--listen", "tcp://" + ip + ":0",
		"--listen", "tls://" + ip + ":0",
		"--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile,
		"--udp-sockets", "1",
		"--relay-ip", ip,
		"--relay-ports", fmt.Sprintf("%d-%d", lo, hi),
		"--allow-loopback-peers",
		"--public-host", ip,
		"--realm", realm,
		"--auth-secret", secret,
		"--http-listen", "127.0.0.1:0",
		"--http-api-key", apiKey,
		"--http-cors-origin", origin,
		"--log-level", "debug",
	}
	offload := testutil.OffloadArgs(t)
	args = append(args, offload...)
	p := testutil.StartProcess(t, "ferry", t.TempDir(), bin, append(args, extra...), nil)
	t.Cleanup(func() { p.CheckRace(t) })
	api := p.WaitOutput(t, httpRE)[1]
	udp := p.WaitOutput(t, readyRE)[1]
	if offload != nil {
		testutil.RequireFastPathOn(t, p)
	}
	return &ferry{API: "http://" + api, UDP: udp, IP: ip, RelayLo: lo, RelayHi: hi, proc: p}
}

// requireOffloaded, in the offload pass (FERRY_TEST_OFFLOAD set), fails t
// unless ferry's kernel fast path relayed ChannelData between two of its
// channels: two relay-only peers of one ferry, each relaying to the
// other's relay address over UDP. Outside the offload pass it does
// nothing.
func (f *ferry) requireOffloaded(t testing.TB) {
	t.Helper()
	if testutil.OffloadInterface() == "" {
		return
	}
	testutil.RequireOffloaded(t, f.API+"/metrics", testutil.OffloadWant{ChannelToChannel: 1})
}

// Log returns everything ferry printed so far.
func (f *ferry) Log() string { return f.proc.Output() }

// candidate is a local ICE candidate as getStats() reports it.
type candidate struct {
	CandidateType string `json:"candidateType"`
	Address       string `json:"address"`
	Port          int    `json:"port"`
	RelayProtocol string `json:"relayProtocol"`
	URL           string `json:"url"`
}

// checkRelayed fails unless c is a relay candidate on ferry's relay address
// (127.0.0.1, in its relay port range) that ferry logged allocating.
func (f *ferry) checkRelayed(t testing.TB, who string, c *candidate) {
	t.Helper()
	if c == nil {
		t.Fatalf("%s: getStats() shows no selected candidate pair", who)
	}
	if c.CandidateType != "relay" || c.Address != f.IP || c.Port < f.RelayLo || c.Port > f.RelayHi {
		t.Fatalf("%s: selected local candidate %+v, want type relay at ferry's relay address %s:%d-%d", who, *c, f.IP, f.RelayLo, f.RelayHi)
	}
	if !strings.Contains(f.Log(), fmt.Sprintf(`relay=%s:%d`, f.IP, c.Port)) {
		t.Fatalf("%s: ferry logged no allocation with relay %s:%d", who, f.IP, c.Port)
	}
}

// job is a driver.mjs job.
type job struct {
	Scenario     string   `json:"scenario"`
	URL          string   `json:"url"`
	Chromium     string   `json:"chromium"`
	UserDataDir  string   `json:"userDataDir"`
	ChromiumArgs []string `json:"chromiumArgs,omitempty"`
	TimeoutMs    int      `json:"timeoutMs"`
	// TestPage fills the test page's form (scenario testpage).
	TestPage *testPageJob `json:"testpage,omitempty"`
	// Screenshot is where the scenario saves a PNG of the page, if set.
	Screenshot string `json:"screenshot,omitempty"`
}

// driverTimeout bounds one driver run; the test's own bound is 60s.
const driverTimeout = 45 * time.Second

// runDriver runs `node driver.mjs` with j in a fresh Chromium profile and
// decodes the scenario's result into out. Chromium and node are killed
// (their whole process group) if the run outlasts driverTimeout.
func runDriver(t *testing.T, tl tools, j job, out any) {
	t.Helper()
	j.Chromium = tl.chromium
	j.UserDataDir = t.TempDir()
	j.TimeoutMs = int((driverTimeout - 5*time.Second) / time.Millisecond)
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), driverTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tl.node, "driver.mjs", string(b))
	var stdout bytes.Buffer
	stderr := testutil.NewLineLog(t, "driver: ")
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.Env = testutil.EnvironWithout("FERRY_")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // a Chromium left behind
	}
	stderr.Flush()
	t.Logf("driver %s ran %v: %v", j.Scenario, time.Since(start).Round(time.Millisecond), err)
	var res struct {
		OK     bool            `json:"ok"`
		Error  string          `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	line := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if jerr := json.Unmarshal(line, &res); jerr != nil {
		t.Fatalf("driver %s: %v; no result on stdout %q", j.Scenario, err, stdout.String())
	}
	if !res.OK {
		t.Fatalf("driver %s failed: %s", j.Scenario, res.Error)
	}
	if err := json.Unmarshal(res.Result, out); err != nil {
		t.Fatalf("driver %s result %s: %v", j.Scenario, res.Result, err)
	}
}
