package metrics

import (
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/offload"
)

func testMetrics(t *testing.T, st engine.Snapshot, draining bool) *Metrics {
	t.Helper()
	return New(Source{
		Stats:             func() engine.Snapshot { return st },
		Draining:          func() bool { return draining },
		PeerDenialReasons: []string{"private", "loopback"},
	}, nil)
}

// gather gathers the registry into name -> family.
func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// value returns the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	mf, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; ok && v != lp.GetValue() {
				continue next
			}
		}
		if len(m.GetLabel()) < len(want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no %s sample with %v", name, want)
	return 0
}

func TestNamingAndHelp(t *testing.T) {
	fams := gather(t, testMetrics(t, engine.Snapshot{}, false))
	ours := 0
	for name, mf := range fams {
		if !strings.HasPrefix(name, "ferry_") {
			continue
		}
		ours++
		if mf.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
		if (mf.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: type %s; counters and only counters end in _total", name, mf.GetType())
		}
		if len(mf.GetMetric()) == 0 {
			t.Errorf("%s has no pre-created sample", name)
		}
	}
	if ours < 15 {
		t.Errorf("only %d ferry_ metrics", ours)
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("no %s: Go and process collectors missing", name)
		}
	}
}

// TestSnapshotAtScrape checks that each engine counter lands in its metric
// and label.
func TestSnapshotAtScrape(t *testing.T) {
	var st engine.Snapshot
	st.ToPeerPackets, st.FromPeerBytes = 11, 2200
	st.Dropped[engine.DropBandwidth] = 7
	st.Refused[engine.RefusedQuota] = 3
	st.AuthFailures[1] = 2 // Refresh
	st.Created[engine.TCP][1] = 5
	st.Active[engine.TCP][1] = 4
	st.Ended[engine.EndClient] = 1
	st.PeerDenied = map[string]uint64{"private": 9}
	st.Bindings, st.StaleNonces = 6, 8
	st.PermissionsActive, st.ChannelsCreated = 12, 13
	fams := gather(t, testMetrics(t, st, true))
	tests := []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"ferry_relay_packets_total", map[string]string{"direction": "to_peer"}, 11},
		{"ferry_relay_bytes_total", map[string]string{"direction": "from_peer"}, 2200},
		{"ferry_packets_dropped_total", map[string]string{"reason": "bandwidth_cap"}, 7},
		{"ferry_packets_dropped_total", map[string]string{"reason": "amplification"}, 0},
		{"ferry_allocations_refused_total", map[string]string{"reason": "quota"}, 3},
		{"ferry_auth_failures_total", map[string]string{"method": "Refresh"}, 2},
		{"ferry_allocations_created_total", map[string]string{"transport": "tcp", "family": "ipv6"}, 5},
		{"ferry_allocations_active", map[string]string{"transport": "tcp", "family": "ipv6"}, 4},
		{"ferry_allocations_active", map[string]string{"transport": "udp", "family": "ipv4"}, 0},
		{"ferry_allocations_ended_total", map[string]string{"reason": "client"}, 1},
		{"ferry_relay_peer_denials_total", map[string]string{"reason": "private"}, 9},
		{"ferry_relay_peer_denials_total", map[string]string{"reason": "loopback"}, 0},
		{"ferry_stun_binding_requests_total", nil, 6},
		{"ferry_stun_stale_nonces_total", nil, 8},
		{"ferry_permissions_active", nil, 12},
		{"ferry_channels_created_total", nil, 13},
		{"ferry_server_draining", nil, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, tt.metric, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
		}
	}
	rec := httptest.NewRecorder()
	testMetrics(t, st, false).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "# HELP ferry_relay_bytes_total") {
		t.Fatalf("handler: %d\n%s", rec.Code, rec.Body)
	}
}

// TestDashboardNamesExist keeps docker/grafana-dashboard.json in step with
// the metric names.
func TestDashboardNamesExist(t *testing.T) {
	b, err := os.ReadFile("../docker/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	// Every metric, the fast path's included.
	fams := gather(t, New(Source{
		Stats:             func() engine.Snapshot { return engine.Snapshot{} },
		Draining:          func() bool { return false },
		PeerDenialReasons: []string{"private"},
		FastPath:          &programCounters{at: []offload.Attachment{{Interface: "eth0", Mode: "tc"}}},
		FastPathChannels:  func() (uint64, uint64) { return 0, 0 },
	}, nil))
	names := regexp.MustCompile(`\b(ferry|go|process)_[a-z_]+`).FindAllString(string(b), -1)
	if len(names) < 10 {
		t.Fatalf("only %d metric names in the dashboard", len(names))
	}
	for _, n := range names {
		if _, ok := fams[n]; !ok {
			t.Errorf("dashboard uses %s, which ferry does not export", n)
		}
	}
}
