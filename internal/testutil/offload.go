package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The offload pass of the end-to-end tests (scripts/test.sh offload-e2e):
// the interop and browser tests run again inside a network namespace of
// their own with FERRY_TEST_OFFLOAD=IF set, every `ferry serve` they start
// attaches the kernel fast path to IF with TC, and the tests that relay
// channel-bound UDP prove from ferry's metrics that the kernel carried it.
// Unset, nothing changes.

// OffloadEnv names the interface the offload pass attaches the kernel fast
// path to ("lo").
const OffloadEnv = "FERRY_TEST_OFFLOAD"

// OffloadInterface returns the interface FERRY_TEST_OFFLOAD names, or ""
// when the tests run without the kernel fast path.
func OffloadInterface() string { return os.Getenv(OffloadEnv) }

// OffloadArgs returns the `ferry serve` flags of the offload pass,
// --relay-offload tc --relay-offload-interface IF, or nil when
// FERRY_TEST_OFFLOAD is unset. It fails t unless the test runs in a
// network namespace made with `ip netns add` (scripts/test.sh makes one),
// never PID 1's: the fast path is attached only inside a namespace the
// test run made, never to the host's own interfaces.
func OffloadArgs(t testing.TB) []string {
	t.Helper()
	ifname := OffloadInterface()
	if ifname == "" {
		return nil
	}
	if err := requireOwnNetns(); err != nil {
		t.Fatalf("%s=%s: %v; run the offload pass with scripts/test.sh offload-e2e, which makes one", OffloadEnv, ifname, err)
	}
	return []string{"--relay-offload", "tc", "--relay-offload-interface", ifname}
}

// requireOwnNetns fails unless this process is in a network namespace
// made with `ip netns add` (one of /var/run/netns), which is never PID 1's.
func requireOwnNetns() error {
	self, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("cannot tell the network namespace: %w", err)
	}
	if host, err := os.Stat("/proc/1/ns/net"); err == nil && os.SameFile(self, host) {
		return errors.New("the tests run in the host's network namespace, where the fast path must not attach")
	}
	named, _ := filepath.Glob("/var/run/netns/*")
	for _, path := range named {
		if fi, err := os.Stat(path); err == nil && os.SameFile(self, fi) {
			return nil
		}
	}
	return errors.New("the tests do not run in a network namespace made with `ip netns add`, so the fast path could attach to the host's interfaces")
}

var fastPathOnRE = regexp.MustCompile(`msg="kernel fast path on: [^"]*" mode=tc attached="([^"]+) \(tc\)"`)

// RequireFastPathOn fails t unless ferry (p, started with OffloadArgs and
// ready: the line comes before "ferry ready") logged that its kernel fast
// path is on, attached with TC to FERRY_TEST_OFFLOAD's interface; without
// it ferry would relay everything in user space and the offload pass
// would prove nothing.
func RequireFastPathOn(t testing.TB, p *Process) {
	t.Helper()
	out := p.Output()
	if m := fastPathOnRE.FindStringSubmatch(out); m != nil && m[1] == OffloadInterface() {
		return
	}
	why := "no \"kernel fast path\" line"
	for line := range strings.Lines(out) {
		if strings.Contains(line, "kernel fast path") || strings.Contains(line, "offload:") {
			why = strings.TrimSpace(line)
		}
	}
	t.Fatalf("%s=%s: %s did not attach the kernel fast path with TC to %s: %s",
		OffloadEnv, OffloadInterface(), p.Name, OffloadInterface(), why)
}

// Metrics fetches a Prometheus text exposition (url is .../metrics) and
// returns its samples keyed as exposed, `name` or `name{label="v",...}`.
func Metrics(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", url, res.Status, b)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("GET %s: sample %q: %w", url, line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return samples, nil
}

// FastPathCounts are a ferry's kernel fast path metrics.
type FastPathCounts struct {
	// Enabled is ferry_offload_enabled.
	Enabled float64
	// ToPeer, FromPeer and ChannelToChannel are the packets the program
	// rewrote (ferry_offload_packets_total by path).
	ToPeer, FromPeer, ChannelToChannel float64
	// OffloadedToPeer and OffloadedFromPeer are the engine's count of the
	// relayed packets the kernel carried, folded in every second
	// (ferry_relay_offloaded_packets_total).
	OffloadedToPeer, OffloadedFromPeer float64
	// RelayedToPeer and RelayedFromPeer are every relayed packet, user
	// space's and the kernel's (ferry_relay_packets_total).
	RelayedToPeer, RelayedFromPeer float64
	// Errors are packets the program dropped after changing them
	// (ferry_offload_errors_total).
	Errors float64
}

func (c FastPathCounts) String() string {
	return fmt.Sprintf("enabled %v; program rewrote to_peer %v, from_peer %v, channel_to_channel %v; "+
		"relayed in the kernel to_peer %v of %v, from_peer %v of %v; errors %v",
		c.Enabled, c.ToPeer, c.FromPeer, c.ChannelToChannel,
		c.OffloadedToPeer, c.RelayedToPeer, c.OffloadedFromPeer, c.RelayedFromPeer, c.Errors)
}

// ReadFastPath scrapes url (a ferry's .../metrics) for its fast path
// counts.
func ReadFastPath(url string) (FastPathCounts, error) {
	m, err := Metrics(url)
	if err != nil {
		return FastPathCounts{}, err
	}
	if _, ok := m["ferry_offload_enabled"]; !ok {
		return FastPathCounts{}, fmt.Errorf("GET %s: no ferry_offload_enabled", url)
	}
	return FastPathCounts{
		Enabled:           m["ferry_offload_enabled"],
		ToPeer:            m[`ferry_offload_packets_total{path="to_peer"}`],
		FromPeer:          m[`ferry_offload_packets_total{path="from_peer"}`],
		ChannelToChannel:  m[`ferry_offload_packets_total{path="channel_to_channel"}`],
		OffloadedToPeer:   m[`ferry_relay_offloaded_packets_total{direction="to_peer"}`],
		OffloadedFromPeer: m[`ferry_relay_offloaded_packets_total{direction="from_peer"}`],
		RelayedToPeer:     m[`ferry_relay_packets_total{direction="to_peer"}`],
		RelayedFromPeer:   m[`ferry_relay_packets_total{direction="from_peer"}`],
		Errors:            m["ferry_offload_errors_total"],
	}, nil
}

// OffloadWant is what RequireOffloaded expects the kernel fast path's
// program to have rewritten, in packets; 0 asks for nothing on that path.
type OffloadWant struct {
	// ToPeer and FromPeer: ChannelData to a peer that is not one of
	// ferry's relays, and the peer's datagrams back as ChannelData.
	ToPeer, FromPeer float64
	// ChannelToChannel: ChannelData straight to another client's channel,
	// for clients relaying to each other's relay addresses.
	ChannelToChannel float64
}

// RequireOffloaded fails t unless the ferry whose metrics are at url (its
// http.listen base URL + "/metrics") has the kernel fast path enabled, its
// program rewrote at least the packets want names on each path, the engine
// counts packets the kernel relayed both ways, and the program reports no
// errors. The engine folds the kernel's counts in every second, so it
// polls for up to 10s. It logs the counts and returns them.
func RequireOffloaded(t testing.TB, url string, want OffloadWant) FastPathCounts {
	t.Helper()
	ok := func(c FastPathCounts) bool {
		return c.Enabled == 1 && c.ToPeer >= want.ToPeer && c.FromPeer >= want.FromPeer &&
			c.ChannelToChannel >= want.ChannelToChannel &&
			c.OffloadedToPeer > 0 && c.OffloadedFromPeer > 0
	}
	deadline := time.Now().Add(10 * time.Second)
	var c FastPathCounts
	var err error
	for {
		c, err = ReadFastPath(url)
		if err == nil && ok(c) {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("kernel fast path metrics: %v", err)
			}
			t.Fatalf("the kernel fast path relayed less than it should have (want at least %+v, and packets both ways): %s", want, c)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("kernel fast path: %s", c)
	if c.Errors != 0 {
		t.Errorf("the fast path's program dropped %v packets on errors (ferry_offload_errors_total)", c.Errors)
	}
	return c
}
