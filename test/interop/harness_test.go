package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/testutil"
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

func TestMain(m *testing.M) { os.Exit(testutil.MainWithFerry(m, "interop", &ferryBinary)) }

// ferryServer is a running `ferry serve`.
type ferryServer struct {
	// Port is the UDP and TCP listening port on 127.0.0.1.
	Port int
	// Metrics is its metrics URL, http://127.0.0.1:PORT/metrics, in the
	// offload pass (FERRY_TEST_OFFLOAD set); "" otherwise.
	Metrics string
}

// httpRE matches ferry's log line naming its HTTP listener.
var httpRE = regexp.MustCompile(`msg="http listening" addr=(127\.0\.0\.1:\d+)`)

// startFerry starts `ferry serve` listening on UDP and TCP at a free port on
// 127.0.0.1, with a free relay port range, the static user alice and the
// REST secret, plus extra flags. It returns once the server answers a STUN
// Binding on UDP and accepts TCP connections; t.Cleanup stops it.
//
// In the offload pass (FERRY_TEST_OFFLOAD set, testutil.OffloadArgs) ferry
// also attaches its kernel fast path to that interface, which the test
// fails without, and serves its metrics on a free port of 127.0.0.1.
func startFerry(t *testing.T, extra ...string) *ferryServer {
	t.Helper()
	bin, err := ferryBinary()
	if err != nil {
		t.Fatalf("building ferry: %v", err)
	}
	port := testutil.FreePort(t)
	lo, hi := testutil.FreePortRange(t, netip.MustParseAddr("127.0.0.1"), 200)
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
	offload := testutil.OffloadArgs(t)
	if offload != nil {
		args = append(args, offload...)
		args = append(args, "--http-listen", "127.0.0.1:0")
	}
	args = append(args, extra...)
	p := testutil.StartProcess(t, "ferry", t.TempDir(), bin, args, nil)
	t.Cleanup(func() { p.CheckRace(t) })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitSTUN(t, p, addr)
	waitTCP(t, p, addr)
	f := &ferryServer{Port: port}
	if offload != nil {
		testutil.RequireFastPathOn(t, p)
		f.Metrics = "http://" + p.WaitOutput(t, httpRE)[1] + "/metrics"
	}
	return f
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

// waitSTUN waits until addr answers a STUN Binding request over UDP with a
// success response carrying XOR-MAPPED-ADDRESS.
func waitSTUN(t testing.TB, p *testutil.Process, addr string) {
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
		if p.Exited() {
			t.Fatalf("%s exited before answering STUN on %s: %v", p.Name, addr, testutil.ExitStatus(p.Err()))
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
	t.Fatalf("%s did not answer STUN Binding on %s within 15s: %v", p.Name, addr, last)
}

// waitTCP waits until addr accepts TCP connections.
func waitTCP(t testing.TB, p *testutil.Process, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if p.Exited() {
			t.Fatalf("%s exited before accepting TCP on %s: %v", p.Name, addr, testutil.ExitStatus(p.Err()))
		}
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not accept TCP on %s within 10s: %v", p.Name, addr, last)
}

// waitUDPEcho waits until addr echoes a UDP datagram back.
func waitUDPEcho(t testing.TB, p *testutil.Process, addr string) {
	t.Helper()
	conn, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 64)
	for time.Now().Before(deadline) {
		if p.Exited() {
			t.Fatalf("%s exited before echoing on %s: %v", p.Name, addr, testutil.ExitStatus(p.Err()))
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
	t.Fatalf("%s did not echo UDP on %s within 10s", p.Name, addr)
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
	t.Logf("$ %s  (%v, %s)\n%s", r.cmdline, r.took.Round(time.Millisecond), testutil.ExitStatus(r.err), r.out)
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
