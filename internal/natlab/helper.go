package natlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/probe"
)

// HelperEnv names the helper a re-executed test binary runs instead of its
// tests; see RunHelper.
const HelperEnv = "FERRY_NATLAB_HELPER"

// helperTimeout bounds every helper process.
const helperTimeout = 10 * time.Second

// RunHelper runs the helper named by HelperEnv, if set, and exits the
// process; otherwise it returns. Call it first thing in TestMain of a
// package that uses Helper.
//
// Helpers talk over stdin/stdout, one "key value" line at a time:
//
//	punch SERVER DURATION: print "mapped ADDR" (from a Binding to SERVER),
//	  read "peer ADDR", send to the peer for DURATION while listening, then
//	  print "received N".
//	relay-client SERVER USER PASSWORD: allocate, print "relayed ADDR", read
//	  "peer IP", permit it, answer every "ping X" relayed from a peer with
//	  "pong X" until stdin closes.
//	relay-peer SERVER: print "mapped ADDR", read "relayed ADDR", send
//	  "ping" there until a "pong" comes back, print "ok FROM".
func RunHelper() {
	name := os.Getenv(HelperEnv)
	if name == "" {
		return
	}
	err := runHelper(name, os.Args[1:], os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "natlab helper %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runHelper(name string, args []string, in io.Reader, out io.Writer) error {
	if len(args) < 1 {
		return errors.New("no server address")
	}
	server, err := netip.ParseAddrPort(args[0])
	if err != nil {
		return fmt.Errorf("server %q: %w", args[0], err)
	}
	pc, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer pc.Close()
	lines := bufio.NewScanner(in)
	expect := func(key string) (string, error) {
		if !lines.Scan() {
			return "", fmt.Errorf("stdin closed before %q", key)
		}
		v, ok := strings.CutPrefix(lines.Text(), key+" ")
		if !ok {
			return "", fmt.Errorf("want %q, read %q", key, lines.Text())
		}
		return v, nil
	}
	switch name {
	case "punch":
		if len(args) != 2 {
			return errors.New("usage: punch SERVER DURATION")
		}
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return err
		}
		b, err := probe.Binding(pc, server, 0, 2*time.Second)
		if err != nil {
			return fmt.Errorf("binding: %w", err)
		}
		fmt.Fprintln(out, "mapped", b.Mapped)
		v, err := expect("peer")
		if err != nil {
			return err
		}
		peer, err := netip.ParseAddrPort(v)
		if err != nil {
			return err
		}
		n, err := punch(pc, peer, d)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "received", n)
		return nil
	case "relay-client":
		if len(args) != 3 {
			return errors.New("usage: relay-client SERVER USER PASSWORD")
		}
		c := probe.NewClient(pc, server, probe.Credentials{Username: args[1], Password: args[2]}, 2*time.Second)
		a, err := c.Allocate()
		if err != nil {
			return fmt.Errorf("allocate: %w", err)
		}
		fmt.Fprintln(out, "relayed", a.Relayed)
		v, err := expect("peer")
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return err
		}
		if err := c.CreatePermission(ip); err != nil {
			return fmt.Errorf("permission: %w", err)
		}
		stdinDone := make(chan struct{})
		go func() {
			for lines.Scan() {
			}
			close(stdinDone)
		}()
		deadline := time.Now().Add(helperTimeout)
		for {
			select {
			case <-stdinDone:
				return nil
			default:
			}
			d, err := c.Receive(minTime(deadline, time.Now().Add(100*time.Millisecond)))
			if errors.Is(err, probe.ErrTimeout) {
				if time.Now().After(deadline) {
					return errors.New("no peer data before the deadline")
				}
				continue
			}
			if err != nil {
				return err
			}
			if x, ok := strings.CutPrefix(string(d.Payload), "ping "); ok {
				if err := c.Send(d.From, []byte("pong "+x)); err != nil {
					return err
				}
			}
		}
	case "relay-peer":
		b, err := probe.Binding(pc, server, 0, 2*time.Second)
		if err != nil {
			return fmt.Errorf("binding: %w", err)
		}
		fmt.Fprintln(out, "mapped", b.Mapped)
		v, err := expect("relayed")
		if err != nil {
			return err
		}
		relayed, err := netip.ParseAddrPort(v)
		if err != nil {
			return err
		}
		buf := make([]byte, 1600)
		deadline := time.Now().Add(helperTimeout)
		for i := 0; time.Now().Before(deadline); i++ {
			if _, err := pc.WriteToUDPAddrPort([]byte(fmt.Sprint("ping ", i)), relayed); err != nil {
				return err
			}
			_ = pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				continue
			}
			if strings.HasPrefix(string(buf[:n]), "pong ") {
				fmt.Fprintln(out, "ok", from)
				return nil
			}
		}
		return errors.New("no pong through the relay")
	}
	return fmt.Errorf("unknown helper %q", name)
}

// punch sends to peer every 20ms for d and counts the datagrams received
// from anyone.
func punch(pc *net.UDPConn, peer netip.AddrPort, d time.Duration) (int, error) {
	buf := make([]byte, 1600)
	n := 0
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := pc.WriteToUDPAddrPort([]byte("punch"), peer); err != nil {
			return n, err
		}
		_ = pc.SetReadDeadline(minTime(deadline, time.Now().Add(20*time.Millisecond)))
		for {
			m, _, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if string(buf[:m]) == "punch" {
				n++
			}
		}
	}
	return n, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// HelperProc is a running helper.
type HelperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
	t     testing.TB
}

// Helper starts the test binary as helper name with args inside ns. It is
// killed at cleanup if still running.
func (l *Lab) Helper(t testing.TB, ns, name string, args ...string) *HelperProc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), helperTimeout+5*time.Second)
	cmd := l.Command(ctx, ns, self, args...)
	cmd.Env = append(os.Environ(), HelperEnv+"="+name)
	tl := newTestLog(t)
	cmd.Stderr = writerFunc(func(p []byte) (int, error) {
		tl.log(name + " stderr: " + strings.TrimSpace(string(p)))
		return len(p), nil
	})
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start helper %s in %s: %v", name, ns, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		tl.stop()
	})
	return &HelperProc{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout), t: t}
}

// Expect reads the helper's next line, which must start with key, and
// returns the rest.
func (h *HelperProc) Expect(key string) string {
	h.t.Helper()
	if !h.lines.Scan() {
		h.t.Fatalf("helper ended before printing %q: %v", key, h.lines.Err())
	}
	v, ok := strings.CutPrefix(h.lines.Text(), key+" ")
	if !ok {
		h.t.Fatalf("helper printed %q, want %q", h.lines.Text(), key+" ...")
	}
	return v
}

// Send writes one line to the helper.
func (h *HelperProc) Send(key, value string) {
	h.t.Helper()
	if _, err := fmt.Fprintln(h.stdin, key, value); err != nil {
		h.t.Fatalf("write to helper: %v", err)
	}
}

// CloseInput closes the helper's stdin.
func (h *HelperProc) CloseInput() { _ = h.stdin.Close() }

// Wait waits for the helper to exit.
func (h *HelperProc) Wait() error { return h.cmd.Wait() }

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
