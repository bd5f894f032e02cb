package metrics

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferryrtc/ferry/engine"
)

// Metrics is ferry's private Prometheus registry with its collectors.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger
}

// Registry returns the private registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp's own error counters
		EnableOpenMetrics: true,
	})
}

// Source is what ferry's metrics are read from at scrape time.
type Source struct {
	// Stats returns the engine's counters (dataplane.Server.Stats).
	Stats func() engine.Snapshot
	// Draining reports whether the server is draining.
	Draining func() bool
	// PeerDenialReasons lists the peer policy's reasons, created at zero.
	PeerDenialReasons []string
	// FastPath is the kernel fast path; nil when it is off.
	FastPath FastPath
	// FastPathChannels returns the channels installed in the fast path
	// and the installs the kernel refused
	// (dataplane.Server.FastPathChannels).
	FastPathChannels func() (installed, refused uint64)
	// Cluster is this node's registry; nil without a cluster.
	Cluster Cluster
	// ClusterQuota is the cluster-wide user quota; nil without one.
	ClusterQuota ClusterQuota
	// ByteBudget is the per-user byte budget; nil without one.
	ByteBudget ByteBudget
	// ProxyProtocolRejected returns the connections to PROXY protocol
	// listeners refused, by reason, every reason present
	// (dataplane.Server.ProxyProtocolRejected); nil: not exported.
	ProxyProtocolRejected func() map[string]uint64
}

// New builds the private registry: the Go and process collectors and one
// collector that reads every ferry metric from the engine's counters when
// scraped (the engine counts with per-shard atomics on its own paths;
// nothing is counted through the registry).
func New(src Source, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: log}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newEngineCollector(src),
		newFastPathCollector(src),
		newClusterCollector(src.Cluster, src.ClusterQuota),
		newBudgetCollector(src.ByteBudget),
		newProxyCollector(src.ProxyProtocolRejected),
	)
	return m
}

// engineCollector turns an engine.Snapshot into ferry's metrics.
type engineCollector struct {
	src Source

	active, created, ended    *prometheus.Desc
	packets, bytes            *prometheus.Desc
	dropped, bindings         *prometheus.Desc
	staleNonces               *prometheus.Desc
	draining                  *prometheus.Desc
	authFailures, refused     *prometheus.Desc
	peerDenied                *prometheus.Desc
	permsCreated, permsActive *prometheus.Desc
	chansCreated, chansActive *prometheus.Desc
}

var _ prometheus.Collector = (*engineCollector)(nil)

func newEngineCollector(src Source) *engineCollector {
	return &engineCollector{
		src: src,
		active: prometheus.NewDesc("ferry_allocations_active",
			"Live allocations, by client transport and relay address family.", []string{"transport", "family"}, nil),
		created: prometheus.NewDesc("ferry_allocations_created_total",
			"Allocations created, by client transport and relay address family.", []string{"transport", "family"}, nil),
		ended: prometheus.NewDesc("ferry_allocations_ended_total", "Allocations ended, by reason: expired (lifetime ran out), client (released by the client with Refresh 0, or its connection closed), admin (closed through the admin API), shutdown (ferry stopped or finished draining), budget (the user's byte budget for the period was spent).", []string{"reason"}, nil),
		packets: prometheus.NewDesc("ferry_relay_packets_total",
			"Packets relayed, by direction: to_peer (client to peer) or from_peer (peer to client). RFC 6062 TCP relays count reads and writes.",
			[]string{"direction"}, nil),
		bytes: prometheus.NewDesc("ferry_relay_bytes_total",
			"Application bytes relayed, by direction: to_peer or from_peer.", []string{"direction"}, nil),
		dropped: prometheus.NewDesc("ferry_packets_dropped_total", "Packets dropped, by reason: malformed (not STUN or ChannelData, or unparsable), oversized (too large to relay), invalid_frame (a stream connection's framing broke), policy (no allocation, permission or channel, expired, or a peer or port the policy refuses), rate_limit (over a per-address limit), bandwidth_cap (over a relay bandwidth cap), amplification (an unauthenticated answer larger than its request allows).", []string{"reason"}, nil),
		bindings: prometheus.NewDesc("ferry_stun_binding_requests_total",
			"STUN Binding requests answered, on listeners and RFC 5780 alternate sockets.", nil, nil),
		staleNonces: prometheus.NewDesc("ferry_stun_stale_nonces_total",
			"Requests answered 438 (Stale Nonce): a nonce expired, signed with another key, sent to another address, or not ferry's.", nil, nil),
		draining: prometheus.NewDesc("ferry_server_draining",
			"1 while the server drains (refuses new allocations before exiting), else 0.", nil, nil),
		authFailures: prometheus.NewDesc("ferry_auth_failures_total",
			"Requests whose credential was refused (answered 401), by STUN method.", []string{"method"}, nil),
		refused: prometheus.NewDesc("ferry_allocations_refused_total",
			"Allocate requests refused, by reason: auth (credential refused), quota (486), policy (an address family, transport or attribute ferry does not offer), capacity (no relay port or the server-wide quota, 508), draining (508 while draining), redirected (300 Try Alternate to another node), budget (the user's byte budget for the period is spent, 486).",
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
		c.staleNonces, c.draining, c.authFailures, c.refused, c.peerDenied, c.permsCreated, c.permsActive, c.chansCreated, c.chansActive} {
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
	counter(c.staleNonces, st.StaleNonces)
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
