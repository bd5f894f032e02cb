package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Redis is a redis-server the test started on a loopback port.
type Redis struct {
	// Addr is its host:port on 127.0.0.1.
	Addr string
	port int
	dir  string
	proc *Process
}

// StartRedis starts redis-server on a free 127.0.0.1 port, without
// persistence, stopped at t's cleanup. Without redis-server the test is
// skipped (fails with CI=true: scripts/install-test-deps.sh redis).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	RequireTool(t, "redis-server")
	r := &Redis{port: FreePort(t), dir: t.TempDir()}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	r.Start(t)
	return r
}

// URL is its redis:// URL.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Start starts it (again, after Kill) on the same port.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		Unavailable(t, "redis-server: %v", err)
	}
	r.proc = StartProcess(t, "redis", r.dir, path, []string{
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "yes", "--loglevel", "warning",
	}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond); err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			buf := make([]byte, 16)
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if string(buf[:n]) == "+PONG\r\n" {
				return
			}
		}
		if r.proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer PING: %s", r.Addr, r.proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops it at once (SIGKILL to its group), as a crash would.
func (r *Redis) Kill(t testing.TB) {
	t.Helper()
	if err := r.proc.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(fmt.Errorf("killing redis-server: %w", err))
	}
	<-r.proc.Done()
}
