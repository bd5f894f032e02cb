package testutil

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Network namespaces for tests that need interfaces of their own (veth
// pairs, BPF programs, routes): they are created by the test, named
// PREFIX PID-RANDOM-ROLE, and deleted at its cleanup; those of a test
// process that was killed before its cleanup ran are swept by the next.
// Code runs inside one on a goroutine locked to a thread that entered it
// (InNetns); a socket stays in the namespace it was created in, so tests
// read and write it from any goroutine.

// RequireNetns skips t (fails it with CI=true) unless it can create
// network namespaces: it needs root and ip(8).
func RequireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "network namespaces need root")
	}
	RequireTool(t, "ip")
}

// MustRun runs a command and fails t on error.
func MustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// NewNetns creates a network namespace with lo up, deleted at t's
// cleanup.
func NewNetns(t testing.TB, prefix, role string) string {
	t.Helper()
	ns := NewEmptyNetns(t, prefix, role)
	MustRun(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// NewEmptyNetns creates a network namespace whose lo stays down (no
// address at all), deleted at t's cleanup.
func NewEmptyNetns(t testing.TB, prefix, role string) string {
	t.Helper()
	sweepNetns(t, prefix)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	ns := fmt.Sprintf("%s%d-%s-%s", prefix, os.Getpid(), hex.EncodeToString(b), role)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		Unavailable(t, "ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	})
	return ns
}

// sweepNetns deletes namespaces of prefix left by test processes that are
// gone.
func sweepNetns(t testing.TB, prefix string) {
	stale := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `([0-9]+)-`)
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		m := stale.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		if _, err := os.Stat("/proc/" + m[1]); err == nil {
			continue
		}
		t.Logf("deleting stale namespace %s", f[0])
		_ = exec.Command("ip", "netns", "del", f[0]).Run()
	}
}

// InNetns runs fn on a new OS thread that has entered namespace ns. The
// thread is never returned to Go's pool (it exits with the goroutine).
func InNetns(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// ListenUDPIn opens a UDP socket in ns bound to addr, closed at t's
// cleanup.
func ListenUDPIn(t testing.TB, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := InNetns(ns, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("listen %v in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// UDPChecksumErrors reads InCsumErrors of UDP over IPv4 and IPv6 in ns:
// datagrams its kernel dropped for a bad checksum.
func UDPChecksumErrors(t testing.TB, ns string) (v4, v6 uint64) {
	t.Helper()
	err := InNetns(ns, func() error {
		snmp, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var hdr []string
		sc := bufio.NewScanner(bytes.NewReader(snmp))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if hdr == nil {
				hdr = f
				continue
			}
			for i, name := range hdr {
				if name == "InCsumErrors" && i < len(f) {
					v4, _ = strconv.ParseUint(f[i], 10, 64)
				}
			}
		}
		snmp6, err := os.ReadFile("/proc/thread-self/net/snmp6")
		if err != nil {
			return err
		}
		sc = bufio.NewScanner(bytes.NewReader(snmp6))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "Udp6InCsumErrors" {
				v6, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading snmp in %s: %v", ns, err)
	}
	return v4, v6
}
