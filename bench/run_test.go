package bench

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

const (
	testRealm  = "bench.test"
	testUser   = "alice"
	testPass   = "wonderland"
	testSecret = "rest-secret"
)

// pionServer is a pion turn.Server on loopback UDP and TCP listeners.
type pionServer struct {
	udp, tcp string
}

// startPion starts a bare pion TURN server; with secret it takes TURN REST
// credentials, else testUser/testPass.
func startPion(t *testing.T, secret string) pionServer {
	t.Helper()
	auth := testutil.StaticAuth(testUser, testRealm, testPass)
	if secret != "" {
		lf := logging.NewDefaultLoggerFactory()
		lf.DefaultLogLevel = logging.LogLevelError
		auth = turn.LongTermTURNRESTAuthHandler(secret, lf.NewLogger("auth"))
	}
	udp, tcp := testutil.PionServer(t, testRealm, auth)
	return pionServer{udp: udp, tcp: tcp}
}

// jsonHas reports whether the dotted path exists in v.
func jsonHas(v map[string]any, path string) bool {
	var cur any = v
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[k]; !ok {
			return false
		}
	}
	return true
}

func TestRunAgainstPion(t *testing.T) {
	tests := []struct {
		name      string
		secret    bool
		cfg       Config
		zeroLoss  bool
		minPeer   uint64 // relay: packets the peer must have seen (a quarter of the nominal: the race detector and a busy machine stall the pacer)
		wantCount uint64 // relay: exact packets sent, when count-bounded
		wantIO    string
		cgroup    bool // a fake cgroup directory: the plumbing, not the kernel
		fields    []string
	}{
		{
			name:     "udp fixed rate",
			cfg:      Config{Transport: "udp", Allocations: 3, Rate: 50, Duration: time.Second},
			zeroLoss: true, minPeer: 35, wantIO: "blocking",
			fields: []string{"relay.relayed_pps", "relay.mbit_per_s", "relay.loss_pct", "relay.rtt.p50_us", "relay.rtt.p99_us",
				"server.cpu_seconds", "server.cpu_us_per_packet", "server.rss_kib_per_allocation", "generator.cpu_seconds", "setup.allocations_per_s"},
		},
		{
			name:     "udp fixed rate, polled",
			cfg:      Config{Transport: "udp", Allocations: 2, Rate: 400, Duration: time.Second},
			zeroLoss: true, minPeer: 200, wantIO: "polled",
			fields: []string{"relay.relayed_pps", "io"},
		},
		{
			name:     "udp fixed rate, blocking asked",
			cfg:      Config{Transport: "udp", Allocations: 2, Rate: 400, IO: IOBlocking, Duration: time.Second},
			zeroLoss: true, minPeer: 200, wantIO: "blocking",
		},
		{
			name:     "udp fixed rate, polled asked",
			cfg:      Config{Transport: "udp", Allocations: 2, Rate: 50, IO: IOPolled, Duration: time.Second},
			zeroLoss: true, minPeer: 25, wantIO: "polled",
		},
		{
			name:     "tcp fixed rate",
			cfg:      Config{Transport: "tcp", Allocations: 3, Rate: 50, Duration: time.Second},
			zeroLoss: true, minPeer: 35,
			fields: []string{"relay.relayed_pps", "relay.rtt.p50_us"},
		},
		{
			name:    "udp max window",
			cfg:     Config{Transport: "udp", Allocations: 2, Window: 4, Duration: time.Second},
			minPeer: 20,
			fields:  []string{"relay.relayed_pps", "window"},
		},
		{
			name:     "udp rest secret, count-bounded",
			secret:   true,
			cfg:      Config{Transport: "udp", Allocations: 4, Rate: 100, Count: 100, Duration: 5 * time.Second, User: "bob"},
			zeroLoss: true, wantCount: 100,
			fields: []string{"relay.sent"},
		},
		{
			name:     "udp fixed rate from 127.0.0.2, cgroup",
			cfg:      Config{Transport: "udp", Allocations: 2, Rate: 50, Duration: time.Second, LocalIP: netip.MustParseAddr("127.0.0.2")},
			zeroLoss: true, minPeer: 20, cgroup: true,
			fields: []string{"cgroup.cpu_seconds", "cgroup.cpu_us_per_packet", "cgroup.with_ksoftirqd_us_per_packet", "cgroup.ksoftirqd_cpu_seconds"},
		},
		{
			name:   "udp idle",
			cfg:    Config{Mode: ModeIdle, Transport: "udp", Allocations: 40, Duration: 200 * time.Millisecond, LocalIP: netip.MustParseAddr("127.0.0.2")},
			fields: []string{"idle.opened", "idle.setup_allocations_per_s", "server.rss_kib_per_allocation", "server.rss_kib_held", "server.rss_kib_after_setup"},
		},
		{
			name:   "tcp idle",
			cfg:    Config{Mode: ModeIdle, Transport: "tcp", Allocations: 10, Duration: 100 * time.Millisecond},
			fields: []string{"idle.opened"},
		},
		{
			name:   "udp allocs",
			cfg:    Config{Mode: ModeAllocs, Transport: "udp", Allocations: 4, Duration: time.Second},
			fields: []string{"allocs.allocations_per_s", "allocs.allocate_latency.p50_us", "server.cpu_us_per_allocation"},
		},
		{
			name:   "tcp allocs, count-bounded",
			cfg:    Config{Mode: ModeAllocs, Transport: "tcp", Allocations: 2, Count: 20, Duration: 5 * time.Second},
			fields: []string{"allocs.allocations_per_s"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := ""
			if tt.secret {
				secret = testSecret
			}
			srv := startPion(t, secret)
			before := runtime.NumGoroutine()
			cfg := tt.cfg
			cfg.Server = srv.udp
			if cfg.Transport == "tcp" {
				cfg.Server = srv.tcp
			}
			if tt.secret {
				cfg.Secret = secret
			} else {
				cfg.User, cfg.Password = testUser, testPass
			}
			cfg.Realm = testRealm
			cfg.ServerPID = os.Getpid() // the server runs in this process
			if tt.cgroup {
				cfg.Cgroup = t.TempDir()
				if err := os.WriteFile(filepath.Join(cfg.Cgroup, "cpu.stat"), []byte("usage_usec 1000\nuser_usec 600\nsystem_usec 400\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := Run(context.Background(), cfg, testutil.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + text.String())
			testutil.CheckGoroutines(t, before)

			if x := rep.Relay; x != nil {
				if x.PeerReceived < tt.minPeer || x.Received == 0 {
					t.Errorf("peer got %d (want >= %d), back %d", x.PeerReceived, tt.minPeer, x.Received)
				}
				if tt.zeroLoss && (x.LossPct != 0 || x.Received != x.Sent) {
					t.Errorf("loss %.3f%%: sent %d, back %d (%s)", x.LossPct, x.Sent, x.Received, x.FirstError)
				}
				if tt.wantCount > 0 && x.Sent != tt.wantCount {
					t.Errorf("sent %d, want exactly %d", x.Sent, tt.wantCount)
				}
				if x.Invalid != 0 || x.SendErrors != 0 || x.PeerErrors != 0 {
					t.Errorf("invalid %d, send errors %d, peer errors %d: %s", x.Invalid, x.SendErrors, x.PeerErrors, x.FirstError)
				}
				if x.RTT.P50 <= 0 || x.RTT.P99 < x.RTT.P50 {
					t.Errorf("rtt p50 %v p99 %v", x.RTT.P50, x.RTT.P99)
				}
				if rep.Setup.ReleaseErrs != 0 {
					t.Errorf("%d releases failed", rep.Setup.ReleaseErrs)
				}
			}
			if tt.wantIO != "" && rep.IO != tt.wantIO {
				t.Errorf("io %q, want %q", rep.IO, tt.wantIO)
			}
			if d := rep.Idle; d != nil {
				if d.Opened != uint64(cfg.Allocations) || d.Failed != 0 || d.ReleaseErrs != 0 {
					t.Errorf("idle: opened %d of %d, failed %d, release errors %d: %s", d.Opened, cfg.Allocations, d.Failed, d.ReleaseErrs, d.FirstError)
				}
				if d.HeldSeconds < cfg.Duration.Seconds() {
					t.Errorf("held %.3fs, want >= %s", d.HeldSeconds, cfg.Duration)
				}
			}
			if tt.cgroup && (rep.Group == nil || rep.Group.CPUSeconds != 0) {
				t.Errorf("cgroup section %+v, want one with 0 s (the fake cpu.stat does not move)", rep.Group)
			}
			if a := rep.Allocs; a != nil {
				if a.Opened == 0 || a.Failed != 0 || a.Released != a.Opened {
					t.Errorf("opened %d, released %d, failed %d: %s", a.Opened, a.Released, a.Failed, a.FirstError)
				}
				if cfg.Count > 0 && a.Opened != uint64(cfg.Count) {
					t.Errorf("opened %d, want exactly %d", a.Opened, cfg.Count)
				}
			}
			if rep.Srv == nil || rep.Srv.RSSStartKiB == 0 || rep.Gen == nil {
				t.Errorf("server/generator process sections missing: %+v %+v", rep.Srv, rep.Gen)
			}

			b, err := json.Marshal(rep)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			for _, f := range append([]string{"mode", "transport", "target", "allocations", "duration_s", "generator.cpu_seconds", "server.rss_kib_end"}, tt.fields...) {
				if !jsonHas(m, f) {
					t.Errorf("JSON report has no %s: %s", f, b)
				}
			}
		})
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"remote target", Config{Server: "192.0.2.1:3478", User: "u", Password: "p"}, "not loopback"},
		{"no credentials", Config{Server: "127.0.0.1:3478"}, "credentials"},
		{"tiny payload", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", Size: 8}, "size 8"},
		{"endless", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", Duration: time.Hour}, "duration"},
		{"count below allocations", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", Allocations: 4, Count: 2}, "count 2"},
		{"bad transport", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", Transport: "sctp"}, "transport"},
		{"no port", Config{Server: "127.0.0.1", User: "u", Password: "p"}, "missing port"},
		{"bad io", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", IO: "fast"}, "io"},
		{"polled tcp", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", IO: IOPolled, Transport: "tcp"}, "io polled"},
		{"relay beyond its cap", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", Allocations: 20000}, "allocations 20000"},
		{"idle beyond its cap", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", Mode: ModeIdle, Allocations: MaxIdleAllocations + 1}, "allocations"},
		{"local ip off loopback", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", LocalIP: netip.MustParseAddr("192.0.2.1")}, "local ip"},
		{"local ip of the other family", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", LocalIP: netip.MustParseAddr("::1")}, "family"},
		{"source net too narrow", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", SourceNet: netip.MustParsePrefix("198.19.0.0/31")}, "source net"},
		{"source net ipv6", Config{Server: "127.0.0.1:3478", User: "u", Password: "p", SourceNet: netip.MustParsePrefix("fd00::/64")}, "source net"},
		{"cgroup without cpu files", Config{Server: "127.0.0.1:1", User: "u", Password: "p", Cgroup: "/nonexistent-cgroup"}, "cgroup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.cfg, testutil.Logger(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestResolveServerLoopback(t *testing.T) {
	tests := []struct {
		server      string
		allowRemote bool
		ok          bool
	}{
		{"127.0.0.1:3478", false, true},
		{"127.9.9.9:3478", false, true},
		{"[::1]:3478", false, true},
		{"[::ffff:127.0.0.1]:3478", false, true},
		{"192.0.2.1:3478", false, false},
		{"192.0.2.1:3478", true, true},
		{"[2001:db8::1]:3478", false, false},
		{"127.0.0.1:0", false, false},
	}
	for _, tt := range tests {
		_, err := resolveServer(tt.server, tt.allowRemote)
		if (err == nil) != tt.ok {
			t.Errorf("resolveServer(%q, %v) = %v, want ok=%v", tt.server, tt.allowRemote, err, tt.ok)
		}
	}
}

func TestRESTCredentialsMatchPion(t *testing.T) {
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(testSecret, "carol", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	exp, _, _ := strings.Cut(user, ":")
	var sec int64
	for _, c := range exp {
		sec = sec*10 + int64(c-'0')
	}
	got := RESTCredentials(testSecret, "carol", time.Unix(sec, 0))
	if got.User != user || got.Password != pass {
		t.Fatalf("RESTCredentials = %+v, pion made %q/%q", got, user, pass)
	}
}

func TestIdlePeersDistinct(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.2")
	seen := map[netip.AddrPort]bool{}
	for i := range MaxIdleAllocations - 1024 {
		p := idlePeer(ip, i)
		if seen[p] || p.Port() < 1024 {
			t.Fatalf("idle peer %d = %s: repeated or below 1024", i, p)
		}
		seen[p] = true
	}
}

func TestSourceIn(t *testing.T) {
	p := netip.MustParsePrefix("198.19.0.0/16")
	tests := []struct {
		n    uint32
		want string
	}{
		{0, "198.19.0.1"},
		{255, "198.19.1.0"},
		{65533, "198.19.255.254"},
		{65534, "198.19.0.1"}, // wraps, skipping .0.0 and .255.255
	}
	for _, tt := range tests {
		if got := sourceIn(p, tt.n); got.String() != tt.want {
			t.Errorf("sourceIn(%s, %d) = %s, want %s", p, tt.n, got, tt.want)
		}
	}
	if got := sourceIn(netip.MustParsePrefix("10.1.2.5/30"), 1); got.String() != "10.1.2.6" {
		t.Errorf("sourceIn(/30, 1) = %s, want 10.1.2.6", got)
	}
}
