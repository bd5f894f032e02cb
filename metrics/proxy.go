package metrics

import "github.com/prometheus/client_golang/prometheus"

// proxyCollector exports the connections to PROXY protocol listeners that
// were refused.
type proxyCollector struct {
	rejected func() map[string]uint64
	desc     *prometheus.Desc
}

func newProxyCollector(rejected func() map[string]uint64) *proxyCollector {
	return &proxyCollector{
		rejected: rejected,
		desc: prometheus.NewDesc("ferry_proxy_protocol_rejected_total",
			"Connections to listeners with ?proxy-protocol=v2 closed before serving them, by reason: untrusted (the peer is not in proxy-protocol.trusted), malformed (no acceptable PROXY protocol v2 header), timeout (no whole header within 5 s).",
			[]string{"reason"}, nil),
	}
}

func (c *proxyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *proxyCollector) Collect(ch chan<- prometheus.Metric) {
	if c.rejected == nil {
		return
	}
	for reason, n := range c.rejected() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), reason)
	}
}
