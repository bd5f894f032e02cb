package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/bench"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// TestBenchSmoke runs `ferry bench` for about two seconds against a pion
// server and checks the JSON report: the short smoke of the suite.
func TestBenchSmoke(t *testing.T) {
	udp, tcp := testutil.PionServer(t, "bench.test", testutil.StaticAuth("u", "bench.test", "p"))
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name string
		args []string
	}{
		{"udp", []string{"turn://" + udp, "--duration", "2s"}},
		{"tcp via URL", []string{"turn:" + tcp + "?transport=tcp", "--duration", "1s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
			args := append([]string{"bench"}, tt.args...)
			args = append(args, "--user", "u", "--password", "p", "--realm", "bench.test",
				"--allocations", "2", "--rate", "50", "--server-pid", pid, "--json")
			if code := run(context.Background(), e, args); code != 0 {
				t.Fatalf("exit %d\nstderr: %s", code, stderr.String())
			}
			var rep struct {
				Relay *struct {
					Sent     uint64  `json:"sent"`
					Received uint64  `json:"received"`
					Loss     float64 `json:"loss_pct"`
					RTT      struct {
						P50 float64 `json:"p50_us"`
					} `json:"rtt"`
				} `json:"relay"`
				Server *struct {
					CPUPerPacket *float64 `json:"cpu_us_per_packet"`
				} `json:"server"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("%v in %s", err, stdout.String())
			}
			if rep.Relay == nil || rep.Relay.Received == 0 || rep.Relay.RTT.P50 <= 0 || rep.Server == nil {
				t.Fatalf("report without traffic: %s", stdout.String())
			}
			if rep.Relay.Received != rep.Relay.Sent {
				t.Errorf("sent %d, back %d at 50 packets/s", rep.Relay.Sent, rep.Relay.Received)
			}
		})
	}
}

func TestBenchRefuses(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"remote target", []string{"turn://192.0.2.7:3478", "--user", "u", "--password", "p"}, "not loopback"},
		{"conflicting transport", []string{"turn:127.0.0.1:3478?transport=tcp", "--transport", "udp", "--user", "u", "--password", "p"}, "transport"},
		{"no credentials", []string{"turn://127.0.0.1:3478"}, "credentials"},
		{"tls", []string{"turns:127.0.0.1:5349", "--user", "u", "--password", "p"}, "not supported"},
		{"bad mode", []string{"turn://127.0.0.1:3478", "--user", "u", "--password", "p", "--mode", "fast"}, "mode"},
		{"bad local ip", []string{"turn://127.0.0.1:3478", "--user", "u", "--password", "p", "--local-ip", "localhost"}, "--local-ip"},
		{"bad source net", []string{"turn://127.0.0.1:3478", "--user", "u", "--password", "p", "--source-net", "198.19.0.0"}, "--source-net"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
			code := run(context.Background(), e, append([]string{"bench"}, tt.args...))
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 mentioning %q", code, stderr.String(), tt.want)
			}
		})
	}
}

func TestParseTURNURL(t *testing.T) {
	tests := []struct {
		in, server, transport string
		ok                    bool
	}{
		{"turn://127.0.0.1:3478", "127.0.0.1:3478", "", true},
		{"turn:127.0.0.1:3479?transport=tcp", "127.0.0.1:3479", "tcp", true},
		{"127.0.0.1:3478", "127.0.0.1:3478", "", true},
		{"turn://127.0.0.1", "127.0.0.1:3478", "", true},
		{"turn:[::1]:3478", "[::1]:3478", "", true},
		{"turn:[::1]", "[::1]:3478", "", true},
		{"turn://localhost:3478/", "localhost:3478", "", true},
		{"turn:127.0.0.1?transport=sctp", "", "", false},
		{"turns:127.0.0.1", "", "", false},
		{"http://127.0.0.1", "", "", false},
		{"turn://", "", "", false},
	}
	for _, tt := range tests {
		server, transport, err := parseTURNURL(tt.in)
		if (err == nil) != tt.ok || server != tt.server || transport != tt.transport {
			t.Errorf("parseTURNURL(%q) = %q, %q, %v; want %q, %q, ok=%v", tt.in, server, transport, err, tt.server, tt.transport, tt.ok)
		}
	}
}

// TestBenchSmokeFerry runs `ferry bench` briefly against `ferry serve` in
// this process, in each mode and client transport, so the tool stays
// working against ferry's own packet path (edge, relay wrappers, quotas).
func TestBenchSmokeFerry(t *testing.T) {
	t.Chdir(t.TempDir()) // no ./ferry.yaml
	te := newCLIEnv()
	done := make(chan int, 1)
	go func() {
		done <- te.run("serve", "--listen", "udp://127.0.0.1:0", "--listen", "tcp://127.0.0.1:0",
			"--relay-ip", "127.0.0.1", "--allow-loopback-peers", "--user", "u=p", "--realm", "bench.test",
			"--udp-sockets", "2")
	}()
	defer te.stop(t, syscall.SIGINT, done)
	var udp, tcp string
	testutil.WaitFor(t, 10*time.Second, "ferry ready", func() bool {
		m := readyRE.FindStringSubmatch(te.stderr.String())
		if m == nil {
			return false
		}
		udp, tcp = m[1], m[2]
		return true
	})
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name string
		args []string
	}{
		{"udp relay", []string{"turn://" + udp, "--duration", "2s", "--rate", "50", "--allocations", "2"}},
		{"tcp relay", []string{"turn://" + tcp + "?transport=tcp", "--duration", "1s", "--rate", "50", "--allocations", "2"}},
		{"allocs", []string{"turn://" + udp, "--mode", "allocs", "--allocations", "2", "--count", "40", "--duration", "5s"}},
		{"idle from 127.0.0.2", []string{"turn://" + udp, "--mode", "idle", "--allocations", "30", "--duration", "300ms", "--local-ip", "127.0.0.2"}},
		{"udp relay from 127.0.0.2", []string{"turn://" + udp, "--duration", "1s", "--rate", "50", "--allocations", "2", "--local-ip", "127.0.0.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
			args := append([]string{"bench"}, tt.args...)
			args = append(args, "--user", "u", "--password", "p", "--realm", "bench.test", "--server-pid", pid, "--json")
			if code := run(context.Background(), e, args); code != 0 {
				t.Fatalf("exit %d\nstderr: %s", code, stderr.String())
			}
			var rep bench.Report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("%v in %s", err, stdout.String())
			}
			switch {
			case rep.Relay != nil:
				if rep.Relay.Received == 0 || rep.Relay.Received != rep.Relay.Sent || rep.Relay.RTT.P50 <= 0 {
					t.Fatalf("sent %d, back %d, rtt p50 %v at 50 packets/s: %s", rep.Relay.Sent, rep.Relay.Received, rep.Relay.RTT.P50, stdout.String())
				}
			case rep.Idle != nil:
				if rep.Idle.Opened != 30 || rep.Idle.Failed != 0 || rep.Idle.ReleaseErrs != 0 || rep.Srv == nil || rep.Srv.RSSPerAlloc == nil {
					t.Fatalf("idle: opened %d of 30, failed %d, release errors %d: %s", rep.Idle.Opened, rep.Idle.Failed, rep.Idle.ReleaseErrs, stdout.String())
				}
			case rep.Allocs != nil:
				if rep.Allocs.Opened != 40 || rep.Allocs.Released != 40 || rep.Allocs.Failed != 0 {
					t.Fatalf("allocations opened %d, released %d, failed %d of 40: %s", rep.Allocs.Opened, rep.Allocs.Released, rep.Allocs.Failed, stdout.String())
				}
			default:
				t.Fatalf("report without results: %s", stdout.String())
			}
		})
	}
}

var readyRE = regexp.MustCompile(`msg="ferry ready".* listen=udp://(127\.0\.0\.1:\d+) listen=tcp://(127\.0\.0\.1:\d+)`)
