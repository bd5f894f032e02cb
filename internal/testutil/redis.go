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
	// durable: every write is on disk (appendonly, fsync always) before
	// it is acknowledged, so a killed and restarted server keeps it.
	durable bool
	proc    *Process
}

// StartRedis starts redis-server on a free 127.0.0.1 port, without
// persistence, stopped at t's cleanup. Without redis-server the test is
// skipped (fails with CI=true: scripts/install-test-deps.sh redis).
func StartRedis(t testing.TB) *Redis { return startRedis(t, false) }

// StartDurableRedis is StartRedis with every write on disk before it is
// acknowledged: what was written survives Kill and Start.
func StartDurableRedis(t testing.TB) *Redis { return startRedis(t, true) }

func startRedis(t testing.TB, durable bool) *Redis {
	t.Helper()
	RequireTool(t, "redis-server")
	r := &Redis{port: FreePort(t), dir: t.TempDir(), durable: durable}
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
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "",
		"--dir", r.dir, "--protected-mode", "yes", "--loglevel", "warning"}
	if r.durable {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	r.proc = StartProcess(t, "redis", r.dir, path, args, nil)
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
