package testutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a child process whose output goes to t.Log.
type Process struct {
	// Name prefixes its output lines in the test log.
	Name string

	cmd  *exec.Cmd
	out  *LineLog
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, set before done is closed
	stop func()        // stops the process (and its group) once; waits
}

// StartProcess starts path with args in dir, in its own process group,
// with FERRY_* variables removed from its environment plus extraEnv, and
// streams its stdout and stderr to t.Log. t.Cleanup stops it (see Stop).
func StartProcess(t testing.TB, name, dir, path string, args, extraEnv []string) *Process {
	t.Helper()
	p := &Process{
		Name: name,
		cmd:  exec.Command(path, args...),
		out:  NewLineLog(t, name+": "),
		done: make(chan struct{}),
	}
	p.cmd.Dir = dir
	p.cmd.Env = append(EnvironWithout("FERRY_"), extraEnv...)
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
		p.out.Flush()
		t.Logf("%s exited: %s", name, ExitStatus(p.err))
	})
	t.Cleanup(p.stop)
	return p
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop stops the process once and waits for it: SIGTERM to its group,
// then SIGKILL after 5s.
func (p *Process) Stop() { p.stop() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns Wait's result once the process has exited, else nil.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Output returns everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// WaitOutput waits up to 30s for re to match the process's output and
// returns the submatches.
func (p *Process) WaitOutput(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			return m
		}
		if p.Exited() {
			t.Fatalf("%s exited (%s) before printing %q", p.Name, ExitStatus(p.err), re)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within 30s", p.Name, re)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CheckRace stops the process and fails t if it was built with the race
// detector and reported a data race.
func (p *Process) CheckRace(t testing.TB) {
	t.Helper()
	p.Stop()
	if strings.Contains(p.Output(), "WARNING: DATA RACE") {
		t.Errorf("%s reported a data race (see its log above)", p.Name)
	}
	var ee *exec.ExitError
	if RaceEnabled && errors.As(p.err, &ee) && ee.ExitCode() == 66 {
		t.Errorf("%s exited with the race detector's status 66", p.Name)
	}
}

// ExitStatus describes Wait's result: "status 0" for nil.
func ExitStatus(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// EnvironWithout returns os.Environ() without variables starting with prefix.
func EnvironWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// LineLog is an io.Writer that sends each complete line, prefixed, to
// t.Log and keeps the whole output. Flush logs a last unterminated line.
type LineLog struct {
	t      testing.TB
	prefix string

	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
}

// NewLineLog returns a LineLog writing to t with prefix.
func NewLineLog(t testing.TB, prefix string) *LineLog {
	return &LineLog{t: t, prefix: prefix}
}

func (l *LineLog) Write(b []byte) (int, error) {
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

// Flush logs a trailing line without a newline.
func (l *LineLog) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.t.Log(l.prefix + string(l.partial))
		l.partial = nil
	}
}

func (l *LineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}
