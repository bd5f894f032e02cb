package metrics

import (
	"net"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/ferryrtc/ferry/edge"
	"github.com/ferryrtc/ferry/relay"
	"github.com/ferryrtc/ferry/rfc5780"
)

func testMetrics(t *testing.T) *Metrics {
	t.Helper()
	m := New(Options{
		RefusedReasons:    []string{"auth", "quota", "policy", "capacity", "draining"},
		AuthMethods:       []string{"Allocate", "Refresh"},
		PeerDenialReasons: relay.Reasons(),
	})
	if err := m.Register(Sources{Tracker: relay.NewTracker(relay.TrackerOptions{}), Edge: &edge.Counters{}, STUN: &rfc5780.Counters{}}); err != nil {
		t.Fatal(err)
	}
	return m
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
	fams := gather(t, testMetrics(t))
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

func TestObserverAndEvents(t *testing.T) {
	tests := []struct {
		name   string
		do     func(m *Metrics)
		metric string
		labels map[string]string
		want   float64
	}{
		{"auth failure", func(m *Metrics) { m.AuthFailed("Refresh"); m.AuthFailed("Refresh") },
			"ferry_auth_failures_total", map[string]string{"method": "Refresh"}, 2},
		{"unknown method", func(m *Metrics) { m.AuthFailed("Bogus") },
			"ferry_auth_failures_total", map[string]string{"method": "other"}, 1},
		{"refused", func(m *Metrics) { m.AllocationRefused("draining") },
			"ferry_allocations_refused_total", map[string]string{"reason": "draining"}, 1},
		{"peer denied", func(m *Metrics) { m.PeerDenied("metadata/link-local") },
			"ferry_relay_peer_denials_total", map[string]string{"reason": "metadata/link-local"}, 1},
		{"permission balance", func(m *Metrics) {
			ev := m.Events()
			ev.OnPermissionCreated(nil, nil, "", "", "", nil, net.IPv4(1, 2, 3, 4))
			ev.OnPermissionCreated(nil, nil, "", "", "", nil, net.IPv4(1, 2, 3, 5))
			ev.OnPermissionDeleted(nil, nil, "", "", "", nil, net.IPv4(1, 2, 3, 4))
		}, "ferry_permissions_active", nil, 1},
		{"permissions created", func(m *Metrics) {
			m.Events().OnPermissionCreated(nil, nil, "", "", "", nil, net.IPv4(1, 2, 3, 4))
		}, "ferry_permissions_created_total", nil, 1},
		{"channel balance", func(m *Metrics) {
			ev := m.Events()
			ev.OnChannelCreated(nil, nil, "", "", "", nil, nil, 0x4000)
			ev.OnChannelDeleted(nil, nil, "", "", "", nil, nil, 0x4000)
		}, "ferry_channels_active", nil, 0},
		{"draining off", func(*Metrics) {}, "ferry_server_draining", nil, 0},
		{"bandwidth cap zero without a quota", func(*Metrics) {},
			"ferry_packets_dropped_total", map[string]string{"reason": "bandwidth_cap"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMetrics(t)
			tt.do(m)
			if got := value(t, gather(t, m), tt.metric, tt.labels); got != tt.want {
				t.Fatalf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
}

func TestSourcesAtScrape(t *testing.T) {
	m := New(Options{})
	draining := false
	if err := m.Register(Sources{
		Quota:    func() relay.QuotaStats { return relay.QuotaStats{DroppedPackets: 7} },
		Draining: func() bool { return draining },
	}); err != nil {
		t.Fatal(err)
	}
	draining = true
	fams := gather(t, m)
	if v := value(t, fams, "ferry_server_draining", nil); v != 1 {
		t.Errorf("draining = %v", v)
	}
	if v := value(t, fams, "ferry_packets_dropped_total", map[string]string{"reason": "bandwidth_cap"}); v != 7 {
		t.Errorf("bandwidth_cap drops = %v", v)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
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
	fams := gather(t, testMetrics(t))
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
