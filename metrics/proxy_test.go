package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/ferryrtc/ferry/engine"
)

// TestProxyProtocolRejected: the data plane's refusals land in
// ferry_proxy_protocol_rejected_total by reason, zeros included; without a
// source the metric is absent.
func TestProxyProtocolRejected(t *testing.T) {
	m := New(Source{
		Stats: func() engine.Snapshot { return engine.Snapshot{} },
		ProxyProtocolRejected: func() map[string]uint64 {
			return map[string]uint64{"untrusted": 3, "malformed": 1, "timeout": 0}
		},
	}, nil)
	fams := gather(t, m)
	for reason, want := range map[string]float64{"untrusted": 3, "malformed": 1, "timeout": 0} {
		if got := value(t, fams, "ferry_proxy_protocol_rejected_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("reason %s: %v, want %v", reason, got, want)
		}
	}
	mf := fams["ferry_proxy_protocol_rejected_total"]
	if mf.GetType() != dto.MetricType_COUNTER || mf.GetHelp() == "" || len(mf.GetMetric()) != 3 {
		t.Fatalf("family %v", mf)
	}
	if _, ok := gather(t, testMetrics(t, engine.Snapshot{}, false))["ferry_proxy_protocol_rejected_total"]; ok {
		t.Fatal("exported without a source")
	}
}
