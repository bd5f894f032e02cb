package browser

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-browser-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browser:", err)
		os.Exit(1)
	}
	ferryBinary = sync.OnceValues(func() (string, error) { return buildFerry(dir) })
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot returns the directory of go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// buildFerry runs `go build -o dir/ferry ./cmd/ferry` in the module root,
// with -race when the tests run with it.
func buildFerry(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ferry")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/ferry")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), root, err, out)
	}
	fmt.Fprintf(os.Stderr, "browser: built ferry (race=%v) in %v\n", raceEnabled, time.Since(start).Round(time.Millisecond))
	return bin, nil
}

// missing skips the test, or fails it when CI=true: CI installs every tool
// (scripts/install-test-deps.sh).
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (run: bash scripts/install-test-deps.sh browser)"
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true: " + msg)
	}
	t.Skip(msg)
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
	root, err := moduleRoot()
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

// process is a child process whose output goes to t.Log.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *lineLog
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, set before done is closed
	stop func()        // stops the process (and its group) once; waits
}

// startProcess starts path with args in dir, in its own process group,
// with FERRY_* variables removed from its environment plus extraEnv, and
// streams its output to t.Log. t.Cleanup stops it: SIGTERM to the group,
// then SIGKILL after 5s.
func startProcess(t *testing.T, name, dir, path string, args, extraEnv []string) *process {
	t.Helper()
	p := &process{
		name: name,
		cmd:  exec.Command(path, args...),
		out:  &lineLog{t: t, prefix: name + ": "},
		done: make(chan struct{}),
	}
	p.cmd.Dir = dir
	p.cmd.Env = append(environWithout("FERRY_"), extraEnv...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.Logf("starting %s %s", path, strings.Join(args, " "))
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	pid := p.cmd.Process.Pid
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	p.stop = sync.OnceFunc(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-pid, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				t.Logf("%s did not exit 5s after SIGTERM; killing it", name)
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-p.done
			}
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL) // whatever it left in its group
		p.out.flush()
		t.Logf("%s exited: %v", name, p.err)
	})
	t.Cleanup(p.stop)
	return p
}

// waitOutput waits up to 30s for re to match the process's output and
// returns the submatches.
func (p *process) waitOutput(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before printing %q", p.name, p.err, re)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within 30s", p.name, re)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// environWithout returns os.Environ() without variables starting with prefix.
func environWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// lineLog is an io.Writer that sends each complete line to t.Log and keeps
// the whole output.
type lineLog struct {
	t      testing.TB
	prefix string

	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
}

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(b)
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.t.Log(l.prefix + string(bytes.TrimRight(l.partial[:i], "\r")))
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.t.Log(l.prefix + string(l.partial))
		l.partial = nil
	}
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// freeRelayRange returns n consecutive ports, all free for UDP and TCP on
// 127.0.0.1 at the time of the call, picked at random below the kernel's
// ephemeral range so other sockets rarely take them meanwhile.
func freeRelayRange(t testing.TB, n int) (lo, hi int) {
	t.Helper()
	const minPort, maxPort = 20000, 32000
	for range 50 {
		lo = minPort + mrand.IntN(maxPort-minPort-n)
		hi = lo + n - 1
		ok := true
		var held []interface{ Close() error }
		for p := lo; p <= hi && ok; p++ {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
			pc, err := net.ListenPacket("udp4", addr)
			if err != nil {
				ok = false
				break
			}
			held = append(held, pc)
			ln, err := net.Listen("tcp4", addr)
			if err != nil {
				ok = false
				break
			}
			held = append(held, ln)
		}
		for _, c := range held {
			c.Close()
		}
		if ok {
			return lo, hi
		}
	}
	t.Fatalf("relay range: no %d consecutive free ports in %d-%d", n, minPort, maxPort)
	return 0, 0
}

// selfSigned writes a certificate for 127.0.0.1 and localhost and its key.
func selfSigned(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ferry browser test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ferry is a running `ferry serve`.
type ferry struct {
	// API is the credentials API base URL, http://127.0.0.1:PORT.
	API string
	// UDP is the TURN UDP listener, 127.0.0.1:PORT.
	UDP string
	// RelayLo and RelayHi bound the relay port range.
	RelayLo, RelayHi int
	proc             *process
}

var (
	readyRE = regexp.MustCompile(`msg="ferry ready".* listen=udp://(127\.0\.0\.1:\d+)`)
	httpRE  = regexp.MustCompile(`msg="http listening" addr=(127\.0\.0\.1:\d+)`)
)

// startFerry starts `ferry serve` on 127.0.0.1 with UDP, TCP and TLS
// listeners on free ports, relays on 127.0.0.1 (loopback peers allowed), the
// REST secret, and the credentials API with apiKey and the CORS origin, plus
// extra flags. t.Cleanup stops it and fails the test on a data race.
func startFerry(t *testing.T, origin string, extra ...string) *ferry {
	t.Helper()
	bin, err := ferryBinary()
	if err != nil {
		t.Fatalf("building ferry: %v", err)
	}
	cert, key := selfSigned(t)
	lo, hi := freeRelayRange(t, 100)
	args := []string{
		"serve",
		"--listen", "udp://127.0.0.1:0",
		"--listen", "tcp://127.0.0.1:0",
		"--listen", "tls://127.0.0.1:0",
		"--tls-cert", cert, "--tls-key", key,
		"--udp-sockets", "1",
		"--relay-ip", "127.0.0.1",
		"--relay-ports", fmt.Sprintf("%d-%d", lo, hi),
		"--allow-loopback-peers",
		"--public-host", "127.0.0.1",
		"--realm", realm,
		"--auth-secret", secret,
		"--http-listen", "127.0.0.1:0",
		"--http-api-key", apiKey,
		"--http-cors-origin", origin,
		"--log-level", "debug",
	}
	p := startProcess(t, "ferry", t.TempDir(), bin, append(args, extra...), nil)
	t.Cleanup(func() {
		p.stop()
		if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
			t.Errorf("ferry reported a data race (see its log above)")
		}
	})
	api := p.waitOutput(t, httpRE)[1]
	udp := p.waitOutput(t, readyRE)[1]
	return &ferry{API: "http://" + api, UDP: udp, RelayLo: lo, RelayHi: hi, proc: p}
}

// Log returns everything ferry printed so far.
func (f *ferry) Log() string { return f.proc.out.String() }

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
	if c.CandidateType != "relay" || c.Address != "127.0.0.1" || c.Port < f.RelayLo || c.Port > f.RelayHi {
		t.Fatalf("%s: selected local candidate %+v, want type relay at ferry's relay address 127.0.0.1:%d-%d", who, *c, f.RelayLo, f.RelayHi)
	}
	if !strings.Contains(f.Log(), fmt.Sprintf(`relay=127.0.0.1:%d`, c.Port)) {
		t.Fatalf("%s: ferry logged no allocation with relay 127.0.0.1:%d", who, c.Port)
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
	stderr := &lineLog{t: t, prefix: "driver: "}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.Env = environWithout("FERRY_")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // a Chromium left behind
	}
	stderr.flush()
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
