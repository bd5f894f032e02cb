package netwatch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
	"golang.org/x/sys/unix"
)

// The namespace test runs the watcher in a child process, this test binary
// started with `ip netns exec NS` and helperEnv set, so that every thread
// of the child lives in the test's namespace. Moving a thread with setns(2)
// instead would not do: Watch re-reads the addresses from its own
// goroutine, which Go may run on any thread, and Addrs opens its netlink
// socket in the namespace of whichever thread runs it.
const helperEnv = "FERRY_NETWATCH_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "watch":
		os.Exit(helper())
	case "overrun":
		os.Exit(overrunHelper())
	}
	os.Exit(m.Run())
}

// helper is the child process. It prints, one per line on stdout:
//
//	addrs LIST     Addrs at start, and for each "check" on stdin
//	ifaces LIST    the net.Interfaces list, after each addrs line
//	change LIST    each onChange of Watch, started with Initial = the first addrs
//	returned GOROUTINES-BEFORE GOROUTINES-AFTER DURATION ERR
//	               when stdin ends: the goroutines before Watch and after
//	               it returned, how long after the cancel, its result
//
// with LIST a comma-separated list of addresses ("-" if empty). Watch's
// log goes to stderr.
func helper() int {
	out := make(chan string, 100)
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for l := range out {
			fmt.Println(l)
		}
	}()
	report := func() ([]netip.Addr, bool) {
		a, err := Addrs()
		if err != nil {
			fmt.Fprintln(os.Stderr, "Addrs:", err)
			return nil, false
		}
		b, err := interfaceAddrs()
		if err != nil {
			fmt.Fprintln(os.Stderr, "interfaceAddrs:", err)
			return nil, false
		}
		out <- "addrs " + format(a)
		out <- "ifaces " + format(b)
		return a, true
	}
	initial, ok := report()
	if !ok {
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := runtime.NumGoroutine()
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		done <- Watch(ctx, Options{Debounce: 50 * time.Millisecond, Initial: initial, Log: log},
			func(a []netip.Addr) { out <- "change " + format(a) })
	}()

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "check" {
			if _, ok := report(); !ok {
				return 1
			}
		}
	}
	cancelled := time.Now()
	cancel()
	err := <-done
	took := time.Since(cancelled)
	after := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
		time.Sleep(10 * time.Millisecond)
	}
	out <- fmt.Sprintf("returned %d %d %v %v", before, after, took, err)
	close(out)
	<-printed
	return 0
}

// overrunHelper is the child process of TestOverrun. It subscribes with
// the smallest receive buffer the kernel allows, prints "ready", and when
// a line comes on stdin (the parent has made a burst of changes meanwhile)
// reads notifications for half a second and prints
//
//	drained NOTIFICATIONS OVERRUNS
//
// then, at the next line on stdin, waits for one more notification and
// prints "after ERR".
func overrunHelper() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := subscribe(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.close()
	var serr error
	if err := s.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
	}); err != nil || serr != nil {
		fmt.Fprintln(os.Stderr, "SO_RCVBUF:", err, serr)
		return 1
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	in.Scan()
	_ = s.f.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	n := 0
	for s.wait() == nil {
		n++
	}
	fmt.Println("drained", n, s.overruns)
	in.Scan()
	_ = s.f.SetReadDeadline(time.Now().Add(waitLong))
	fmt.Println("after", s.wait())
	return 0
}

func format(a []netip.Addr) string {
	if len(a) == 0 {
		return "-"
	}
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func parseList(t *testing.T, s string) []netip.Addr {
	t.Helper()
	if s == "-" {
		return []netip.Addr{}
	}
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(f)
		if err != nil {
			t.Fatalf("helper printed %q: %v", s, err)
		}
		out = append(out, a)
	}
	return out
}

// nsPrefix names the test's namespaces.
const nsPrefix = "ferry-netwatch-"

// newNamespace creates an empty network namespace (lo down, no address),
// deleted at cleanup. It skips t without root or ip, or fails it with
// CI=true.
func newNamespace(t *testing.T) string {
	t.Helper()
	testutil.RequireNetns(t)
	return testutil.NewEmptyNetns(t, nsPrefix, "w")
}

// inNS runs ip with args inside namespace ns.
func inNS(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "ip"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s (in %s): %v\n%s", strings.Join(args, " "), ns, err, out)
	}
}

// addLink adds an interface name to ns and sets it up, without the IPv6
// link-local address the kernel would add and run duplicate address
// detection on: DAD ending changes the address's flags, a notification at
// a time the test does not control. It is a dummy interface, or where the
// kernel has no dummy driver (some minimal VM kernels) one end of a veth
// pair whose other end, namep, is up too so that name has a carrier.
func addLink(t *testing.T, ns, name string) {
	t.Helper()
	links := []string{name}
	out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "add", name, "type", "dummy").CombinedOutput()
	if err != nil {
		t.Logf("no dummy interface (%v: %s); using a veth pair", err, bytes.TrimSpace(out))
		inNS(t, ns, "link", "add", name, "type", "veth", "peer", "name", name+"p")
		links = append(links, name+"p")
	}
	for _, l := range links {
		inNS(t, ns, "link", "set", l, "addrgenmode", "none")
		inNS(t, ns, "link", "set", l, "up")
	}
}

// addMany adds n addresses to dev in ns with one ip process: format with
// 1..n.
func addMany(t *testing.T, ns, format, dev string, n int) {
	t.Helper()
	batch := filepath.Join(t.TempDir(), "batch")
	var cmds strings.Builder
	for i := range n {
		fmt.Fprintf(&cmds, "addr add "+format+" dev %s\n", i+1, dev)
	}
	if err := os.WriteFile(batch, []byte(cmds.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	inNS(t, ns, "-batch", batch)
}

// child is the helper process running in a namespace.
type child struct {
	stdin io.WriteCloser
	lines chan string
	last  []netip.Addr // the last list delivered (or the initial one)
}

// startChild starts the helper of mode (watch, overrun) in ns.
func startChild(t *testing.T, ns, mode string) *child {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	stderr := testutil.NewLineLog(t, "helper: ")
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the helper: %v", err)
	}
	c := &child{stdin: stdin, lines: make(chan string, 100)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case err := <-waited:
			if err != nil {
				t.Errorf("helper: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("helper did not exit; killed: %v", <-waited)
		}
		stderr.Flush()
		if strings.Contains(stderr.String(), "WARNING: DATA RACE") {
			t.Error("the helper reported a data race")
		}
	})
	return c
}

// next returns the next line of the helper, which must start with kind.
func (c *child) next(t *testing.T, kind string) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("helper exited before printing %q", kind)
		}
		t.Logf("helper says: %s", l)
		rest, ok := strings.CutPrefix(l, kind)
		if rest != "" {
			rest, ok = strings.CutPrefix(rest, " ")
		}
		if !ok {
			t.Fatalf("helper printed %q, want %q", l, kind+" ...")
		}
		return rest
	case <-time.After(waitLong):
		t.Fatalf("helper printed no %q within %v", kind, waitLong)
		return ""
	}
}

// check asks the helper for its lists and compares Addrs's with the
// net.Interfaces one; it returns Addrs's.
func (c *child) check(t *testing.T, initial bool) []netip.Addr {
	t.Helper()
	if !initial {
		if _, err := io.WriteString(c.stdin, "check\n"); err != nil {
			t.Fatal(err)
		}
	}
	a := parseList(t, c.next(t, "addrs"))
	b := parseList(t, c.next(t, "ifaces"))
	if !slices.Equal(a, b) {
		t.Errorf("Addrs = %v, net.Interfaces lists %v", a, b)
	}
	return a
}

// change waits for onChange calls until one satisfies ok, failing t if
// none does within a few seconds or if a call repeats the previous list.
// It returns the number of calls it saw.
func (c *child) change(t *testing.T, what string, ok func([]netip.Addr) bool) int {
	t.Helper()
	deadline := time.After(waitLong)
	n := 0
	for {
		select {
		case l, open := <-c.lines:
			if !open {
				t.Fatalf("helper exited while waiting for %s", what)
			}
			t.Logf("helper says: %s", l)
			rest, isChange := strings.CutPrefix(l, "change ")
			if !isChange {
				t.Fatalf("helper printed %q while waiting for %s", l, what)
			}
			a := parseList(t, rest)
			if slices.Equal(a, c.last) {
				t.Fatalf("onChange(%v) repeats the last list", a)
			}
			if !slices.IsSortedFunc(a, netip.Addr.Compare) || len(slices.Compact(slices.Clone(a))) != len(a) {
				t.Fatalf("onChange(%v): not sorted and deduplicated", a)
			}
			c.last = a
			n++
			if ok(a) {
				return n
			}
		case <-deadline:
			t.Fatalf("no onChange with %s within %v (last list %v)", what, waitLong, c.last)
			return n
		}
	}
}

func has(s string) func([]netip.Addr) bool {
	a := netip.MustParseAddr(s)
	return func(l []netip.Addr) bool { return slices.Contains(l, a) }
}

func hasNot(s string) func([]netip.Addr) bool {
	a := netip.MustParseAddr(s)
	return func(l []netip.Addr) bool { return !slices.Contains(l, a) }
}

// TestWatchNamespace changes the addresses and links of a namespace of its
// own and checks what a Watch running inside it delivers.
func TestWatchNamespace(t *testing.T) {
	ns := newNamespace(t)
	// Every address is added by the test (IPv6 with nodad), so nothing
	// changes in the namespace but what the test does. Taking d1, which
	// has no IPv6 address, down sends link notifications only: its IPv4
	// address stays configured, no address notification says it went.
	addLink(t, ns, "d0")
	addLink(t, ns, "d1")
	inNS(t, ns, "addr", "add", "198.18.5.4/32", "dev", "d0")
	inNS(t, ns, "-6", "addr", "add", "fe80::5/64", "dev", "d0", "nodad")

	c := startChild(t, ns, "watch")
	start := time.Now()
	c.last = c.check(t, true)
	// lo is down: no loopback addresses.
	if want := list("198.18.5.4", "fe80::5"); !slices.Equal(c.last, want) {
		t.Fatalf("initial list %v, want %v", c.last, want)
	}

	inNS(t, ns, "addr", "add", "198.18.5.5/32", "dev", "d0")
	c.change(t, "198.18.5.5", has("198.18.5.5"))
	inNS(t, ns, "addr", "del", "198.18.5.5/32", "dev", "d0")
	c.change(t, "198.18.5.5 gone", hasNot("198.18.5.5"))
	inNS(t, ns, "-6", "addr", "add", "2001:db8::5/128", "dev", "d0", "nodad")
	c.change(t, "2001:db8::5", has("2001:db8::5"))
	inNS(t, ns, "addr", "add", "198.18.5.6/32", "dev", "d1")
	c.change(t, "198.18.5.6", has("198.18.5.6"))
	inNS(t, ns, "link", "set", "d1", "down")
	c.change(t, "198.18.5.6 gone with d1 down", hasNot("198.18.5.6"))
	inNS(t, ns, "link", "set", "d1", "up")
	c.change(t, "198.18.5.6 back with d1 up", has("198.18.5.6"))
	// Many changes at once, from one ip process: a burst the debounce
	// turns into one re-read, or a few if the machine is slow.
	addMany(t, ns, "198.18.6.%d/32", "d0", 20)
	n := c.change(t, "198.18.6.1-20", func(l []netip.Addr) bool {
		for i := range 20 {
			if !slices.Contains(l, netip.AddrFrom4([4]byte{198, 18, 6, byte(i + 1)})) {
				return false
			}
		}
		return true
	})
	t.Logf("20 addresses added: %d onChange calls", n)
	if n >= 20 {
		t.Errorf("20 addresses added: %d onChange calls; the burst was not coalesced", n)
	}
	t.Logf("changes seen in %v", time.Since(start).Round(time.Millisecond))

	final := c.check(t, false)
	for _, want := range []string{"2001:db8::5", "198.18.5.6", "198.18.6.20"} {
		if !has(want)(final) {
			t.Errorf("final Addrs %v lacks %s", final, want)
		}
	}
	if !slices.Equal(final, c.last) {
		t.Errorf("final Addrs %v, last onChange %v", final, c.last)
	}

	// Stop: Watch must return promptly and leave no goroutine behind.
	_ = c.stdin.Close()
	var before, after int
	var tookS, result string
	if _, err := fmt.Sscanf(c.next(t, "returned"), "%d %d %s %s", &before, &after, &tookS, &result); err != nil {
		t.Fatalf("parsing the helper's returned line: %v", err)
	}
	took, err := time.ParseDuration(tookS)
	if err != nil {
		t.Fatalf("parsing the helper's returned line: %v", err)
	}
	if result != "<nil>" {
		t.Errorf("Watch returned %s after ctx ended, want nil", result)
	}
	if took >= time.Second {
		t.Errorf("Watch returned %v after ctx ended, want < 1s", took)
	}
	if after > before {
		t.Errorf("goroutines: %d before Watch, %d after it returned", before, after)
	}
}

// TestOverrun overruns an rtnetlink subscription's receive queue and
// checks that wait reports ENOBUFS as a notification (Watch re-reads then)
// and keeps working after it.
func TestOverrun(t *testing.T) {
	ns := newNamespace(t)
	addLink(t, ns, "d0")
	c := startChild(t, ns, "overrun")
	c.next(t, "ready")
	addMany(t, ns, "198.18.7.%d/32", "d0", 50)
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	var n, overruns int
	if _, err := fmt.Sscan(c.next(t, "drained"), &n, &overruns); err != nil {
		t.Fatal(err)
	}
	if overruns == 0 || n < overruns {
		t.Fatalf("50 addresses added: %d notifications, %d overruns; want an overrun reported as a notification", n, overruns)
	}
	inNS(t, ns, "addr", "add", "198.18.8.1/32", "dev", "d0")
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if got := c.next(t, "after"); got != "<nil>" {
		t.Fatalf("wait after the overrun = %s, want nil", got)
	}
}

// TestWatchReturnsOnCancel watches the test's own namespace (reading only)
// and checks that cancelling ctx unblocks the netlink read at once.
func TestWatchReturnsOnCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, Options{Log: testutil.Logger(t)}, func([]netip.Addr) {}) }()
	time.Sleep(100 * time.Millisecond) // let it block reading the socket
	cancelled := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch returned %v after ctx ended, want nil", err)
		}
		t.Logf("Watch returned %v after cancel", time.Since(cancelled))
	case <-time.After(time.Second):
		t.Fatal("Watch did not return within 1s of ctx ending")
	}
	testutil.CheckGoroutines(t, before)

	// An ended ctx: Watch subscribes, then returns at once.
	if err := Watch(ctx, Options{}, func([]netip.Addr) {}); err != nil {
		t.Fatalf("Watch with an ended ctx = %v, want nil", err)
	}
	testutil.CheckGoroutines(t, before)
}

// TestAddrsHost reads the test's own namespace's addresses.
func TestAddrsHost(t *testing.T) {
	a, err := Addrs()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Addrs = %v", a)
	if a == nil {
		t.Error("Addrs returned a nil list")
	}
	for i, x := range a {
		if !x.IsValid() || x.Zone() != "" || x.Is4In6() || x.IsUnspecified() || x.IsMulticast() {
			t.Errorf("Addrs returned %v", x)
		}
		if i > 0 && !a[i-1].Less(x) {
			t.Errorf("Addrs not sorted and deduplicated: %v then %v", a[i-1], x)
		}
	}
}

func TestParseAddr(t *testing.T) {
	ne := binary.NativeEndian
	msg := func(family, flags byte, index uint32, attrs ...[]byte) []byte {
		b := make([]byte, unix.SizeofIfAddrmsg)
		b[0], b[2] = family, flags
		ne.PutUint32(b[4:], index)
		for _, a := range attrs {
			b = append(b, a...)
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
		return b
	}
	rta := func(typ uint16, v []byte) []byte {
		b := make([]byte, unix.SizeofRtAttr)
		ne.PutUint16(b[0:], uint16(unix.SizeofRtAttr+len(v)))
		ne.PutUint16(b[2:], typ)
		return append(b, v...)
	}
	flags := func(v uint32) []byte { return rta(unix.IFA_FLAGS, ne.AppendUint32(nil, v)) }
	v4 := []byte{198, 18, 5, 5}
	peer := []byte{198, 18, 5, 1}
	v6 := netip.MustParseAddr("2001:db8::5").AsSlice()
	overrun := rta(unix.IFA_ADDRESS, v4)
	ne.PutUint16(overrun, 40)
	for _, tc := range []struct {
		name  string
		b     []byte
		want  string // "" for not ok
		index uint32
	}{
		{"ipv4", msg(unix.AF_INET, 0, 3, rta(unix.IFA_ADDRESS, v4), rta(unix.IFA_LOCAL, v4)), "198.18.5.5", 3},
		{"ipv4 point-to-point", msg(unix.AF_INET, 0, 4, rta(unix.IFA_ADDRESS, peer), rta(unix.IFA_LOCAL, v4)), "198.18.5.5", 4},
		{"ipv6", msg(unix.AF_INET6, 0, 5, rta(unix.IFA_ADDRESS, v6)), "2001:db8::5", 5},
		{"ipv6 tentative", msg(unix.AF_INET6, unix.IFA_F_TENTATIVE, 5, rta(unix.IFA_ADDRESS, v6), flags(unix.IFA_F_TENTATIVE)), "2001:db8::5", 5},
		{"ipv6 dad failed (header)", msg(unix.AF_INET6, unix.IFA_F_DADFAILED, 5, rta(unix.IFA_ADDRESS, v6)), "", 0},
		{"ipv6 dad failed (IFA_FLAGS)", msg(unix.AF_INET6, 0, 5, rta(unix.IFA_ADDRESS, v6), flags(unix.IFA_F_DADFAILED)), "", 0},
		{"wrong length", msg(unix.AF_INET, 0, 3, rta(unix.IFA_ADDRESS, v6)), "", 0},
		{"other family", msg(unix.AF_PACKET, 0, 3, rta(unix.IFA_ADDRESS, v4)), "", 0},
		{"no address", msg(unix.AF_INET, 0, 3), "", 0},
		{"short", []byte{unix.AF_INET, 0, 0}, "", 0},
		{"attribute overruns", msg(unix.AF_INET, 0, 3, overrun), "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, index, ok := parseAddr(tc.b)
			if tc.want == "" {
				if ok {
					t.Fatalf("parseAddr = %v, %d, true; want not ok", a, index)
				}
				return
			}
			if !ok || a != netip.MustParseAddr(tc.want) || index != tc.index {
				t.Fatalf("parseAddr = %v, %d, %v; want %s, %d, true", a, index, ok, tc.want, tc.index)
			}
		})
	}
}
