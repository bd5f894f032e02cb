package interop

import (
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// toolTimeout bounds one coturn tool run. turnutils_uclient needs about 5s
// for a clean run and waits up to 10s more for missing packets.
const toolTimeout = 45 * time.Second

func TestSTUNClientBinding(t *testing.T) {
	t.Parallel()
	stunclient := testutil.RequireTool(t, "turnutils_stunclient")
	f := startFerry(t)

	// turnutils_stunclient prints
	//   0: : IPv4. UDP reflexive addr: 127.0.0.1:54395
	// and, with no answer, retries forever: the timeout ends it.
	run := runTool(15*time.Second, stunclient, "-p", strconv.Itoa(f.Port), "127.0.0.1")
	run.log(t)
	if run.err != nil {
		t.Errorf("turnutils_stunclient: %v", run.err)
	}
	m := regexp.MustCompile(`UDP reflexive addr: (\S+)`).FindStringSubmatch(run.out)
	if m == nil {
		t.Fatalf("turnutils_stunclient printed no reflexive address")
	}
	host, port, err := net.SplitHostPort(m[1])
	if err != nil {
		t.Fatalf("reflexive address %q: %v", m[1], err)
	}
	if host != "127.0.0.1" {
		t.Errorf("reflexive address host = %s, want 127.0.0.1", host)
	}
	if p, _ := strconv.Atoi(port); p <= 0 || p > 65535 || p == f.Port {
		t.Errorf("reflexive address port = %s, want the client's own port", port)
	}
}

// relayRun is one turnutils_uclient run expected to relay without loss.
type relayRun struct {
	name string
	// args are the transport and mode flags (-t, -y, -s, ...).
	args []string
	// auth are the credential flags.
	auth []string
}

func TestUClientRelay(t *testing.T) {
	t.Parallel()
	staticAuth := []string{"-u", user, "-w", password}
	// -c: no RTCP allocations, so each client makes one plain allocation.
	// Without it uclient allocates an RTP relay with EVEN-PORT (R bit) and
	// the RTCP relay with the RESERVATION-TOKEN it got back. All runs share
	// one server at once: the reservation runs then race the others for
	// relay ports, which is what relay/park.go and the even-port probe's
	// free-successor rule are for (a busy successor used to fail the RTCP
	// Allocate with 508 about once in 40 runs).
	runUClientRelays(t, []relayRun{
		{name: "udp", args: []string{"-c"}, auth: staticAuth},
		{name: "tcp", args: []string{"-t", "-c"}, auth: staticAuth},
		{name: "udp-send-indication", args: []string{"-s", "-c"}, auth: staticAuth},
		{name: "udp-client-to-client", args: []string{"-y", "-c"}, auth: staticAuth},
		{name: "tcp-client-to-client", args: []string{"-t", "-y", "-c"}, auth: staticAuth},
		{name: "udp-rtp-rtcp-reservation", auth: staticAuth},
		{name: "tcp-rtp-rtcp-reservation", args: []string{"-t"}, auth: staticAuth},
	})
}

func TestUClientRESTCredentials(t *testing.T) {
	t.Parallel()
	// With -W, turnutils_uclient makes the TURN REST username
	// "<now+86400>:<-u value>" and the password base64(HMAC-SHA1(secret,
	// username)) itself.
	restAuth := []string{"-W", restSecret, "-u", "interop-rest"}
	runUClientRelays(t, []relayRun{
		{name: "udp", args: []string{"-c"}, auth: restAuth},
		{name: "tcp", args: []string{"-t", "-c"}, auth: restAuth},
	})
}

// runUClientRelays starts one ferry and one turnutils_peer echo peer, runs
// turnutils_uclient for every relayRun at the same time, and checks each in a
// subtest: every message sent, every echo received, nothing lost, no errors.
func runUClientRelays(t *testing.T, runs []relayRun) {
	uclient := testutil.RequireTool(t, "turnutils_uclient")
	peer := testutil.RequireTool(t, "turnutils_peer")
	f := startFerry(t)
	peerPort := startPeer(t, peer)

	const messages, clients = 20, 2
	var argLists [][]string
	for _, r := range runs {
		args := slices.Concat(r.args, r.auth, []string{
			"-p", strconv.Itoa(f.Port),
			"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
			"-n", strconv.Itoa(messages), "-m", strconv.Itoa(clients),
			"-l", "120",
			"127.0.0.1",
		})
		argLists = append(argLists, args)
	}
	results := runTools(toolTimeout, uclient, argLists)
	sent := make([]int, len(runs)) // messages each run sent
	for i, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			run := results[i]
			run.log(t)
			if run.err != nil {
				t.Errorf("turnutils_uclient: %v", run.err)
			}
			res, err := parseUClient(run.out)
			sent[i] = res.sent
			if err != nil {
				t.Fatalf("turnutils_uclient output: %v; error lines:\n%s", err, strings.Join(res.errors, "\n"))
			}
			// Each client sends -n messages to the peer, which echoes them.
			// With -y clients send to each other's relays instead, and
			// without -c their RTCP sessions send too.
			want := messages * clients
			if slices.Contains(r.args, "-y") && !slices.Contains(r.args, "-c") {
				want *= 2
			}
			if res.sent != want {
				t.Errorf("sent %d messages, want %d", res.sent, want)
			}
			if res.received != res.sent {
				t.Errorf("received %d of %d messages", res.received, res.sent)
			}
			if res.lost != 0 || res.sendDropped != 0 {
				t.Errorf("lost %d packets, send dropped %d; want 0", res.lost, res.sendDropped)
			}
			if len(res.errors) > 0 {
				t.Errorf("turnutils_uclient reported errors:\n%s", strings.Join(res.errors, "\n"))
			}
		})
	}
	if f.Metrics != "" {
		// The offload pass: the kernel fast path must have relayed every
		// message of the runs over UDP with channels, to the peer and its
		// echo back (with -y, from one client's channel straight to the
		// other's). ferry installs a channel's entry before its
		// ChannelBind answer leaves, and turnutils_uclient sends only
		// after its channels are bound, so none goes to user space.
		var want testutil.OffloadWant
		for i, r := range runs {
			switch {
			case !r.udpChannels():
			case slices.Contains(r.args, "-y"):
				want.ChannelToChannel += float64(sent[i])
			default:
				want.ToPeer += float64(sent[i])
				want.FromPeer += float64(sent[i])
			}
		}
		if want != (testutil.OffloadWant{}) {
			testutil.RequireOffloaded(t, f.Metrics, want)
		}
	}
}

// udpChannels reports whether r relays over UDP with ChannelData, what the
// kernel fast path carries: turnutils_uclient binds channels unless -s
// (Send and Data indications), and -t and -T are TCP.
func (r relayRun) udpChannels() bool {
	return !slices.ContainsFunc(r.args, func(a string) bool { return a == "-t" || a == "-T" || a == "-s" })
}

func TestUClientWrongCredentials(t *testing.T) {
	t.Parallel()
	uclient := testutil.RequireTool(t, "turnutils_uclient")
	peer := testutil.RequireTool(t, "turnutils_peer")
	f := startFerry(t)
	peerPort := startPeer(t, peer)

	cases := []struct {
		name string
		args []string
	}{
		{"wrong-password", []string{"-u", user, "-w", "not-" + password}},
		{"wrong-password-tcp", []string{"-t", "-u", user, "-w", "not-" + password}},
		{"unknown-user", []string{"-u", "mallory", "-w", password}},
		{"wrong-rest-secret", []string{"-W", "not-" + restSecret, "-u", "interop-rest"}},
	}
	var argLists [][]string
	for _, tc := range cases {
		argLists = append(argLists, slices.Concat(tc.args, []string{
			"-p", strconv.Itoa(f.Port),
			"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
			"-n", "5", "127.0.0.1",
		}))
	}
	results := runTools(toolTimeout, uclient, argLists)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			run := results[i]
			run.log(t)
			if run.err == nil {
				t.Errorf("turnutils_uclient succeeded with wrong credentials")
			}
			// A rejected Allocate shows as "0: : error 401 ()" (a rejected
			// ChannelBind as "0: : channel bind: error 401 ()"). Plain pion
			// answers refused credentials with 400; ferry answers 401
			// (RFC 8489 section 9.2.4), which clients know to retry with
			// other credentials.
			// On 401 uclient retries with the fresh NONCE and then gives
			// up with "Cannot complete Allocation"; on any other code it
			// prints it ("error 400 ()") and stops at once.
			if m := uclientAllocateError.FindStringSubmatch(run.out); m != nil && m[1] != "401" {
				t.Errorf("Allocate error %s, want 401", m[1])
			}
			if !strings.Contains(run.out, "Cannot complete Allocation") {
				t.Errorf("turnutils_uclient did not report the refused allocation")
			}
			if res, err := parseUClient(run.out); err == nil && res.received > 0 {
				t.Errorf("relayed %d messages with wrong credentials", res.received)
			}
		})
	}
}

// startPeer starts turnutils_peer, a UDP echo server, on a free port of
// 127.0.0.1 and returns the port once it echoes.
func startPeer(t *testing.T, path string) int {
	t.Helper()
	port := freeUDPPort(t)
	p := testutil.StartProcess(t, "peer", t.TempDir(), path, []string{"-L", "127.0.0.1", "-p", strconv.Itoa(port)}, nil)
	waitUDPEcho(t, p, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	return port
}

// uclientResult is what turnutils_uclient reported at the end of a run.
type uclientResult struct {
	sent, received    int
	lost, sendDropped int
	errors            []string
}

var (
	// 6: : start_mclient: tot_send_msgs=40, tot_recv_msgs=40
	uclientTotals = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)`)
	// 6: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
	uclientLost = regexp.MustCompile(`Total lost packets (\d+) \([^)]*\), total send dropped (\d+)`)
	// 0: : error 401 ()
	uclientAllocateError = regexp.MustCompile(`(?m)^\d+: : error (\d{3})`)
	// 0: : error 400 (), 0: : channel bind: error 401 (), "Cannot ..."
	uclientError = regexp.MustCompile(`(?i)error|cannot|fail|wrong|unauthori`)
)

// parseUClient reads the totals and error lines of turnutils_uclient's
// output; it fails when the totals are missing.
func parseUClient(out string) (uclientResult, error) {
	var r uclientResult
	var haveTotals, haveLost bool
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if m := uclientTotals.FindStringSubmatch(line); m != nil {
			r.sent, _ = strconv.Atoi(m[1])
			r.received, _ = strconv.Atoi(m[2])
			haveTotals = true
		}
		if m := uclientLost.FindStringSubmatch(line); m != nil {
			r.lost, _ = strconv.Atoi(m[1])
			r.sendDropped, _ = strconv.Atoi(m[2])
			haveLost = true
		}
		if uclientError.MatchString(line) {
			r.errors = append(r.errors, line)
		}
	}
	if !haveTotals || !haveLost {
		return r, fmt.Errorf("no %q and %q lines (the run did not finish)", "tot_send_msgs=", "Total lost packets")
	}
	return r, nil
}

func TestParseUClient(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      uclientResult
		wantErr   bool
	}{
		{
			name: "clean",
			out: `5: : start_mclient: msz=2, tot_send_msgs=20, tot_recv_msgs=20, tot_send_bytes ~ 2000, tot_recv_bytes ~ 2000
5: : start_mclient: tot_send_msgs=40, tot_recv_msgs=40
5: : start_mclient: tot_send_bytes ~ 4000, tot_recv_bytes ~ 4000
5: : Total transmit time is 5
5: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
`,
			want: uclientResult{sent: 40, received: 40},
		},
		{
			name: "loss",
			out: `16: : start_mclient: tot_send_msgs=40, tot_recv_msgs=37
16: : Total lost packets 3 (7.500000%), total send dropped 1 (2.500000%)
`,
			want: uclientResult{sent: 40, received: 37, lost: 3, sendDropped: 1},
		},
		{
			name:    "allocate rejected",
			out:     "0: : error 401 ()\n0: : error 401 ()\n",
			want:    uclientResult{errors: []string{"0: : error 401 ()", "0: : error 401 ()"}},
			wantErr: true,
		},
		{
			name: "channel bind rejected after totals",
			out: `0: : channel bind: error 403 ()
6: : start_mclient: tot_send_msgs=40, tot_recv_msgs=40
6: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
`,
			want: uclientResult{sent: 40, received: 40, errors: []string{"0: : channel bind: error 403 ()"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUClient(tc.out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseUClient error = %v, want error %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseUClient = %+v, want %+v", got, tc.want)
			}
		})
	}
}
