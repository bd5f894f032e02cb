package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
	"github.com/ferryrtc/ferry/probe"
)

func TestProbeCommand(t *testing.T) {
	addr, _ := testutil.PionServer(t, "ferry.test", testutil.StaticAuth("u", "ferry.test", "p"))
	tests := []struct {
		name string
		args []string
		code int
		out  string // substring of stdout
		err  string // substring of stderr
	}{
		{name: "stun text", args: []string{"probe", "stun://" + addr}, out: "mapping              unknown"},
		{name: "stun json", args: []string{"probe", "stun://" + addr, "--json"}, out: `"mapped": "127.0.0.1:`},
		{name: "bad url", args: []string{"probe", "http://x"}, code: 2, err: "not stun or turn"},
		{name: "no url", args: []string{"probe"}, code: 1, err: "accepts 1 arg"},
		{name: "turn without credentials", args: []string{"probe", "turn://" + addr}, code: 2, err: "--user and --password, or --secret"},
		{name: "stun with credentials", args: []string{"probe", "stun://" + addr, "--user", "u"}, code: 2, err: "for turn://"},
		{name: "bad timeout", args: []string{"probe", "stun://" + addr, "--timeout", "0s"}, code: 2, err: "--timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
			code := run(context.Background(), e, tt.args)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) || !strings.Contains(stderr.String(), tt.err) {
				t.Errorf("stdout:\n%s\nstderr:\n%s\nwant %q / %q", stdout.String(), stderr.String(), tt.out, tt.err)
			}
			if strings.HasSuffix(tt.name, "json") {
				var rep probe.STUNReport
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || rep.Mapped == "" {
					t.Errorf("JSON report %+v: %v", rep, err)
				}
			}
		})
	}
}

// TestProbeExplainsServe probes a `ferry serve` running in-process: when a
// TURN check fails, the report names the step, the cause and a fix.
func TestProbeExplainsServe(t *testing.T) {
	// Relaying to loopback is off (the default): the probe's peer socket
	// is on 127.0.0.1. ferry admits its own relay address as a peer only
	// on relay ports, and the peer socket's ephemeral port is outside
	// 20000-20999, so the relayed reply never arrives.
	policyYAML := "realm: " + drainRealm + "\nlisten: [udp://127.0.0.1:0]\n" +
		"relay:\n  ip: [127.0.0.1]\n  ports: 20000-20999\n" +
		"auth:\n  users: [" + drainUser + "=" + drainPass + "]\n" +
		"http:\n  listen: 127.0.0.1:0\n"
	tests := []struct {
		name string
		yaml string
		// drain: an allocation is held and ferry is sent SIGTERM first.
		drain bool
		out   []string
	}{
		{name: "loopback peer refused", yaml: policyYAML, out: []string{
			"result: FAILED at relay round trip",
			"cause:  peer refused by the server's peer policy (relay.allowed-peers / relay.allow-loopback-peers)",
			"fix:    ", "relay.allow-loopback-peers: true",
		}},
		{name: "draining", yaml: servingYAML(time.Minute, "", ""), drain: true, out: []string{
			"result: FAILED at allocate",
			"cause:  server is draining (shutting down or upgrading)",
			"fix:    try another server",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sf := startServingYAML(t, tt.yaml)
			if tt.drain {
				relayConn, err := sf.turnClient(t).Allocate()
				if err != nil {
					t.Fatal(err)
				}
				defer relayConn.Close()
				sf.te.sigs <- syscall.SIGTERM
				waitForText(t, sf.te.stderr, "draining: refusing new allocations")
			}
			te := newCLIEnv()
			code := te.run("probe", "turn://"+sf.udp, "--user", drainUser, "--password", drainPass, "--timeout", "500ms")
			out := te.stdout.String()
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, te.stderr)
			}
			for _, want := range tt.out {
				if !strings.Contains(out, want) {
					t.Fatalf("report lacks %q:\n%s", want, out)
				}
			}
			te = newCLIEnv()
			te.run("probe", "turn://"+sf.udp, "--user", drainUser, "--password", drainPass, "--timeout", "500ms", "--json")
			var rep probe.TURNReport
			if err := json.Unmarshal([]byte(te.stdout.String()), &rep); err != nil || rep.Cause == "" || rep.Fix == "" || rep.FailedStep == "" {
				t.Fatalf("JSON report %+v: %v", rep, err)
			}
		})
	}
}
