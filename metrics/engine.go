package metrics

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferryrtc/ferry/engine"
)

// EngineSource is what the metrics of ferry's own engine are read from at
// scrape time.
type EngineSource struct {
	// Stats returns the engine's counters (dataplane.Server.Stats).
	Stats func() engine.Snapshot
	// Draining reports whether the server is draining.
	Draining func() bool
	// PeerDenialReasons lists the peer policy's reasons, created at zero.
	PeerDenialReasons []string
}

// NewForEngine builds the private registry of a server on ferry's own
// engine: the Go and process collectors and one collector that reads every
// ferry metric from the engine's counters when scraped (the engine counts
// with per-shard atomics; nothing is counted through the registry).
func NewForEngine(src EngineSource, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: log}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newEngineCollector(src),
	)
	return m
}

// engineCollector turns an engine.Snapshot into ferry's metrics.
type engineCollector struct {
	src EngineSource

	active, created, ended    *prometheus.Desc
	packets, bytes            *prometheus.Desc
	dropped, bindings         *prometheus.Desc
	draining                  *prometheus.Desc
	authFailures, refused     *prometheus.Desc
	peerDenied                *prometheus.Desc
	permsCreated, permsActive *prometheus.Desc
	chansCreated, chansActive *prometheus.Desc
}

var _ prometheus.Collector = (*engineCollector)(nil)

func newEngineCollector(src EngineSource) *engineCollector {
	s := newSourceCollector(Sources{})
	return &engineCollector{
		src:      src,
		active:   s.active,
		created:  s.created,
		ended:    prometheus.NewDesc("ferry_allocations_ended_total", "Allocations ended, by reason: expired (lifetime ran out), client (released by the client with Refresh 0, or its connection closed), admin (closed through the admin API), shutdown (ferry stopped or finished draining).", []string{"reason"}, nil),
		packets:  s.packets,
		bytes:    s.bytes,
		dropped:  prometheus.NewDesc("ferry_packets_dropped_total", "Packets dropped, by reason: malformed (not STUN or ChannelData, or unparsable), oversized (too large to relay), invalid_frame (a stream connection's framing broke), policy (no allocation, permission or channel, expired, or a peer or port the policy refuses), rate_limit (over a per-address limit), bandwidth_cap (over a relay bandwidth cap), amplification (an unauthenticated answer larger than its request allows).", []string{"reason"}, nil),
		bindings: s.bindings,
		draining: s.draining,
		authFailures: prometheus.NewDesc("ferry_auth_failures_total",
			"Requests whose credential was refused (answered 401), by STUN method.", []string{"method"}, nil),
		refused: prometheus.NewDesc("ferry_allocations_refused_total",
			"Allocate requests refused, by reason: auth (credential refused), quota (486), policy (an address family, transport or attribute ferry does not offer), capacity (no relay port or the server-wide quota, 508), draining (508 while draining).",
			[]string{"reason"}, nil),
		peerDenied: prometheus.NewDesc("ferry_relay_peer_denials_total",
			"Peers refused by the peer address policy in CreatePermission, ChannelBind and Connect (403), by reason.", []string{"reason"}, nil),
		permsCreated: prometheus.NewDesc("ferry_permissions_created_total", "TURN permissions created.", nil, nil),
		permsActive:  prometheus.NewDesc("ferry_permissions_active", "TURN permissions in force.", nil, nil),
		chansCreated: prometheus.NewDesc("ferry_channels_created_total", "TURN channels bound.", nil, nil),
		chansActive:  prometheus.NewDesc("ferry_channels_active", "TURN channels bound now.", nil, nil),
	}
}

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.active, c.created, c.ended, c.packets, c.bytes, c.dropped, c.bindings,
		c.draining, c.authFailures, c.refused, c.peerDenied, c.permsCreated, c.permsActive, c.chansCreated, c.chansActive} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for ti, tr := range engine.Transports() {
		for fi, fam := range engine.Families() {
			gauge(c.active, st.Active[ti][fi], tr.String(), fam)
			counter(c.created, st.Created[ti][fi], tr.String(), fam)
		}
	}
	for i, r := range engine.EndReasons() {
		counter(c.ended, st.Ended[i], r)
	}
	counter(c.packets, st.ToPeerPackets, "to_peer")
	counter(c.packets, st.FromPeerPackets, "from_peer")
	counter(c.bytes, st.ToPeerBytes, "to_peer")
	counter(c.bytes, st.FromPeerBytes, "from_peer")
	for i, r := range engine.DropReasons() {
		counter(c.dropped, st.Dropped[i], r)
	}
	counter(c.bindings, st.Bindings)
	draining := uint64(0)
	if c.src.Draining != nil && c.src.Draining() {
		draining = 1
	}
	gauge(c.draining, draining)
	for i, m := range engine.AuthMethods() {
		counter(c.authFailures, st.AuthFailures[i], m)
	}
	for i, r := range engine.RefusedReasons() {
		counter(c.refused, st.Refused[i], r)
	}
	for _, r := range c.src.PeerDenialReasons {
		counter(c.peerDenied, st.PeerDenied[r], r)
	}
	counter(c.permsCreated, st.PermissionsCreated)
	gauge(c.permsActive, st.PermissionsActive)
	counter(c.chansCreated, st.ChannelsCreated)
	gauge(c.chansActive, st.ChannelsActive)
}
