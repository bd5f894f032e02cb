package natlab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BuildFerry builds ./cmd/ferry into dir and returns the binary's path.
func BuildFerry(ctx context.Context, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ferry")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/ferry")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ferry: %w\n%s", err, out)
	}
	return bin, nil
}

// FerryArgs are the `ferry serve` flags of the lab's ferry: UDP on the
// primary address, RFC 5780 alternates on the second, the static user
// user=password, and relaying allowed to the lab's documentation prefixes
// (refused by ferry's default peer policy).
func (l *Lab) FerryArgs(user, password string) []string {
	return []string{
		"serve",
		"--listen", "udp://" + l.FerryIP.String() + ":3478",
		"--alt-ip", l.FerryAlt.String(),
		"--relay-ip", l.FerryIP.String(),
		"--relay-ports", "50000-50999",
		"--udp-sockets", "1",
		"--realm", "natlab",
		"--user", user + "=" + password,
		"--allowed-peers", "198.51.100.0/24",
		"--allowed-peers", "192.0.2.0/24",
		"--allowed-peers", "203.0.113.0/24",
		"--log-level", "debug",
	}
}

// StartFerry runs bin with args in ferry's namespace, waits until it logs
// "ferry ready", and stops it at cleanup. Its log goes to t.Log.
func (l *Lab) StartFerry(t testing.TB, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := l.Command(ctx, l.FerryNS, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(interruptSignal) }
	cmd.WaitDelay = 5 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start ferry: %v", err)
	}
	ready := make(chan struct{})
	var once sync.Once
	logDone := make(chan struct{})
	tl := newTestLog(t)
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			tl.log("ferry: " + line)
			if strings.Contains(line, "ferry ready") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		exited <- cmd.Wait()
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		<-logDone
		tl.stop()
	})
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("ferry exited before it was ready: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("ferry not ready after 15s")
	}
}

// testLog logs to t until stopped (goroutines may outlive the test).
type testLog struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func newTestLog(t testing.TB) *testLog { return &testLog{t: t} }

func (l *testLog) log(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(s)
	}
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}
