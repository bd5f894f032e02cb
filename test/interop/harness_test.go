package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// Credentials every test ferry accepts.
const (
	realm      = "ferry.test"
	user       = "alice"
	password   = "secret1"
	restSecret = "restsecret"
)

// ferryBinary builds ./cmd/ferry on first use and returns its path. TestMain
// sets it; the binary lives in a directory TestMain removes.
var ferryBinary func() (string, error)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	ferryBinary = sync.OnceValues(func() (string, error) { return buildFerry(dir) })
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildFerry runs `go build -o dir/ferry ./cmd/ferry` in the module root,
// with -race when the tests run with it.
func buildFerry(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
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
	fmt.Fprintf(os.Stderr, "interop: built ferry (race=%v) in %v\n", raceEnabled, time.Since(start).Round(time.Millisecond))
	return bin, nil
}

// requireTool returns the path of the executable name. When it is missing
// the test is skipped, unless CI=true, where a missing tool is a failure:
// CI installs every tool (scripts/install-test-deps.sh).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (CI=true; run scripts/install-test-deps.sh): %v", name, err)
	}
	t.Skipf("%s not found (run scripts/install-test-deps.sh): %v", name, err)
	return ""
}

// ferryServer is a running `ferry serve`.
type ferryServer struct {
	// Port is the UDP and TCP listening port on 127.0.0.1.
	Port int
}

// startFerry starts `ferry serve` listening on UDP and TCP at a free port on
// 127.0.0.1, with a free relay port range, the static user alice and the
// REST secret, plus extra flags. It returns once the server answers a STUN
// Binding on UDP and accepts TCP connections; t.Cleanup stops it.
func startFerry(t *testing.T, extra ...string) *ferryServer {
	t.Helper()
	bin, err := ferryBinary()
	if err != nil {
		t.Fatalf("building ferry: %v", err)
	}
	port := freePort(t)
	lo, hi := freeRelayRange(t, 200)
	args := []string{
		"serve",
		"--listen", fmt.Sprintf("udp://127.0.0.1:%d", port),
		"--listen", fmt.Sprintf("tcp://127.0.0.1:%d", port),
		"--relay-ip", "127.0.0.1",
		"--relay-ports", fmt.Sprintf("%d-%d", lo, hi),
		"--allow-loopback-peers",
		"--realm", realm,
		"--user", user + "=" + password,
		"--auth-secret", restSecret,
		"--log-level", "debug",
		"--log-format", "text",
	}
	args = append(args, extra...)
	p := startProcess(t, "ferry", bin, args, func(t testing.TB, out string, err error) {
		if strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("ferry reported a data race (see its log above)")
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 66 && raceEnabled {
			t.Errorf("ferry exited with the race detector's status 66")
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitSTUN(t, p, addr)
	waitTCP(t, p, addr)
	return &ferryServer{Port: port}
}

// process is a child process whose output goes to t.Log.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *lineLog
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, set before done is closed
	stop func()        // stops the process once; waits for it
}

// startProcess starts path with args in a fresh temporary directory and
// FERRY_* variables removed from its environment, streams its stdout and
// stderr to t.Log, and stops it in t.Cleanup: SIGTERM, then SIGKILL after 5s.
// afterExit, if not nil, then sees the full output and Wait's error.
func startProcess(t *testing.T, name, path string, args []string, afterExit func(t testing.TB, out string, err error)) *process {
	t.Helper()
	p := &process{
		name: name,
		cmd:  exec.Command(path, args...),
		out:  &lineLog{t: t, prefix: name + ": "},
		done: make(chan struct{}),
	}
	p.cmd.Dir = t.TempDir()
	p.cmd.Env = environWithout("FERRY_")
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	t.Logf("starting %s %s", path, strings.Join(args, " "))
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	p.stop = sync.OnceFunc(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				t.Logf("%s did not exit 5s after SIGTERM; killing it", name)
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		p.out.flush()
		t.Logf("%s exited: %v", name, exitStatus(p.err))
	})
	t.Cleanup(func() {
		p.stop()
		if afterExit != nil {
			afterExit(t, p.out.String(), p.err)
		}
	})
	return p
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
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

// flush logs a trailing line without a newline.
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

// freePort returns a port that is free on 127.0.0.1 for both UDP and TCP.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("free port: no port free for both UDP and TCP on 127.0.0.1")
	return 0
}

// freeUDPPort returns a port that is free for UDP on 127.0.0.1.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// freeRelayRange returns n consecutive ports, all free for UDP on 127.0.0.1
// at the time of the call, picked at random below the kernel's ephemeral
// range (32768 and up on Linux) so other sockets rarely take them meanwhile.
func freeRelayRange(t testing.TB, n int) (lo, hi int) {
	t.Helper()
	const minPort, maxPort = 20000, 32000
	for range 50 {
		lo = minPort + rand.IntN(maxPort-minPort-n)
		hi = lo + n - 1
		ok := true
		var held []net.PacketConn
		for p := lo; p <= hi; p++ {
			pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, pc)
		}
		for _, pc := range held {
			pc.Close()
		}
		if ok {
			return lo, hi
		}
	}
	t.Fatalf("relay range: no %d consecutive free UDP ports in %d-%d", n, minPort, maxPort)
	return 0, 0
}

// waitSTUN waits until addr answers a STUN Binding request over UDP with a
// success response carrying XOR-MAPPED-ADDRESS.
func waitSTUN(t testing.TB, p *process, addr string) {
	t.Helper()
	conn, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(15 * time.Second)
	buf := make([]byte, 1500)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s exited before answering STUN on %s: %v", p.name, addr, exitStatus(p.err))
		}
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := conn.Write(req.Raw); err != nil {
			last = err
			time.Sleep(100 * time.Millisecond) // ICMP port unreachable: not listening yet
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := conn.Read(buf)
		if err != nil {
			last = err
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := res.Decode(); err != nil {
			last = fmt.Errorf("decoding response: %w", err)
			continue
		}
		if res.TransactionID != req.TransactionID {
			continue // a late answer to an earlier attempt
		}
		var xor stun.XORMappedAddress
		if res.Type != stun.BindingSuccess {
			last = fmt.Errorf("response type %v", res.Type)
			continue
		}
		if err := xor.GetFrom(res); err != nil {
			t.Fatalf("STUN Binding success from %s without XOR-MAPPED-ADDRESS: %v", addr, err)
		}
		return
	}
	t.Fatalf("%s did not answer STUN Binding on %s within 15s: %v", p.name, addr, last)
}

// waitTCP waits until addr accepts TCP connections.
func waitTCP(t testing.TB, p *process, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s exited before accepting TCP on %s: %v", p.name, addr, exitStatus(p.err))
		}
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not accept TCP on %s within 10s: %v", p.name, addr, last)
}

// waitUDPEcho waits until addr echoes a UDP datagram back.
func waitUDPEcho(t testing.TB, p *process, addr string) {
	t.Helper()
	conn, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 64)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s exited before echoing on %s: %v", p.name, addr, exitStatus(p.err))
		}
		if _, err := conn.Write([]byte("ping")); err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := conn.Read(buf)
		if err == nil && string(buf[:n]) == "ping" {
			return
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Fatalf("%s did not echo UDP on %s within 10s", p.name, addr)
}

// toolRun is the result of running a client tool to completion.
type toolRun struct {
	cmdline string
	out     string // stdout and stderr
	err     error
	took    time.Duration
}

// log writes the command line, its duration and status, and its output to t.
func (r toolRun) log(t testing.TB) {
	t.Helper()
	t.Logf("$ %s  (%v, %s)\n%s", r.cmdline, r.took.Round(time.Millisecond), exitStatus(r.err), r.out)
}

// runTool runs a client tool to completion, killing it after timeout.
func runTool(timeout time.Duration, path string, args ...string) toolRun {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = os.TempDir()
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %v: %w", timeout, err)
	}
	return toolRun{
		cmdline: filepath.Base(path) + " " + strings.Join(args, " "),
		out:     out.String(),
		err:     err,
		took:    time.Since(start),
	}
}

// runTools runs path once per argument list, all at the same time, and
// returns the results in order. Running them concurrently here rather than
// in parallel subtests keeps the wall time at one run's even when go test
// -parallel is small (it defaults to GOMAXPROCS).
func runTools(timeout time.Duration, path string, argLists [][]string) []toolRun {
	runs := make([]toolRun, len(argLists))
	var wg sync.WaitGroup
	for i, args := range argLists {
		wg.Go(func() { runs[i] = runTool(timeout, path, args...) })
	}
	wg.Wait()
	return runs
}
