package metrics

import (
	"log/slog"
	"net"
	"net/http"
	"slices"

	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferryrtc/ferry/edge"
	"github.com/ferryrtc/ferry/relay"
	"github.com/ferryrtc/ferry/rfc5780"
)

// Label values of the scrape-time metrics; every combination is exported,
// so dashboards see zeros rather than gaps.
func transports() []string { return []string{"udp", "tcp", "tls", "dtls"} }
func families() []string   { return []string{relay.FamilyIPv4, relay.FamilyIPv6} }
func endReasons() []string { return []string{relay.EndExpired, relay.EndAdmin} }
func dropReasons() []string {
	return []string{"malformed", "oversized", "invalid_frame", "policy", "rate_limit", "bandwidth_cap"}
}

// otherLabel takes values outside the lists an Options gives.
const otherLabel = "other"

// Options lists the label values counters are created with up front.
type Options struct {
	// RefusedReasons are the reasons of refused allocations
	// (server.RefusedReasons).
	RefusedReasons []string
	// AuthMethods are the STUN methods of authentication failures
	// (server.AuthMethods).
	AuthMethods []string
	// PeerDenialReasons are the peer policy's reasons (relay.Reasons).
	PeerDenialReasons []string
	// Log receives errors from serving /metrics; nil discards.
	Log *slog.Logger
}

// Sources are the counters read at scrape time. Any may be nil.
type Sources struct {
	// Tracker supplies allocations and relayed traffic.
	Tracker *relay.Tracker
	// Edge supplies dropped client packets and Binding requests.
	Edge *edge.Counters
	// STUN supplies Binding requests answered on RFC 5780 alternate
	// sockets.
	STUN *rfc5780.Counters
	// Quota supplies packets dropped by the bandwidth caps
	// ((*server.Server).QuotaStats).
	Quota func() relay.QuotaStats
	// Draining reports whether the server is draining.
	Draining func() bool
}

// Metrics is ferry's private Prometheus registry with its collectors. It
// implements server.Observer. Counting methods take no lock and allocate
// nothing: every label set is created in New.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	authFailures map[string]prometheus.Counter
	refused      map[string]prometheus.Counter
	peerDenied   map[string]prometheus.Counter

	permissionsCreated prometheus.Counter
	permissionsActive  prometheus.Gauge
	channelsCreated    prometheus.Counter
	channelsActive     prometheus.Gauge
}

// New builds the registry with the Go and process collectors and ferry's
// event counters. Call Register with the server's counters once it runs.
func New(o Options) *Metrics {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{reg: prometheus.NewRegistry(), log: o.Log}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.authFailures = m.counterSet("ferry_auth_failures_total",
		"Requests whose credential was refused (answered 401), by STUN method.", "method", o.AuthMethods)
	m.refused = m.counterSet("ferry_allocations_refused_total",
		"Allocate requests refused, by reason: auth (credential refused), quota (486), policy (address family not offered), capacity (no relay port, 508), draining (508 while draining).",
		"reason", o.RefusedReasons)
	m.peerDenied = m.counterSet("ferry_relay_peer_denials_total",
		"Peers refused by the peer address policy in CreatePermission, ChannelBind and Connect (403), by reason.",
		"reason", o.PeerDenialReasons)
	m.permissionsCreated = m.counter("ferry_permissions_created_total", "TURN permissions created.")
	m.permissionsActive = m.gauge("ferry_permissions_active", "TURN permissions in force.")
	m.channelsCreated = m.counter("ferry_channels_created_total", "TURN channels bound.")
	m.channelsActive = m.gauge("ferry_channels_active", "TURN channels bound now.")
	return m
}

func (m *Metrics) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	m.reg.MustRegister(c)
	return c
}

func (m *Metrics) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	m.reg.MustRegister(g)
	return g
}

// counterSet registers a counter with one label and creates a child for
// every value, plus "other".
func (m *Metrics) counterSet(name, help, label string, values []string) map[string]prometheus.Counter {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
	m.reg.MustRegister(v)
	out := map[string]prometheus.Counter{}
	for _, val := range append(slices.Clone(values), otherLabel) {
		out[val] = v.WithLabelValues(val)
	}
	return out
}

func inc(set map[string]prometheus.Counter, key string) {
	c, ok := set[key]
	if !ok {
		c = set[otherLabel]
	}
	c.Inc()
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

// AuthFailed counts a refused credential (server.Observer).
func (m *Metrics) AuthFailed(method string) { inc(m.authFailures, method) }

// AllocationRefused counts a refused Allocate request (server.Observer).
func (m *Metrics) AllocationRefused(reason string) { inc(m.refused, reason) }

// PeerDenied counts a peer refused by policy (server.Observer).
func (m *Metrics) PeerDenied(reason string) { inc(m.peerDenied, reason) }

// Events returns pion event callbacks counting permissions and channels.
func (m *Metrics) Events() turn.EventHandler {
	return turn.EventHandler{
		OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ net.IP) {
			m.permissionsCreated.Inc()
			m.permissionsActive.Inc()
		},
		OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, _ net.Addr, _ net.IP) {
			m.permissionsActive.Dec()
		},
		OnChannelCreated: func(_, _ net.Addr, _, _, _ string, _, _ net.Addr, _ uint16) {
			m.channelsCreated.Inc()
			m.channelsActive.Inc()
		},
		OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, _, _ net.Addr, _ uint16) {
			m.channelsActive.Dec()
		},
	}
}

// Register adds the collector that reads s at scrape time: allocations,
// relayed traffic, dropped packets, Binding requests and the drain state.
// Call it once.
func (m *Metrics) Register(s Sources) error {
	return m.reg.Register(newSourceCollector(s))
}

// sourceCollector turns the counters kept on the hot paths (atomics on
// per-allocation and per-socket state) into metrics when scraped.
type sourceCollector struct {
	s Sources

	active, created, ended *prometheus.Desc
	packets, bytes         *prometheus.Desc
	dropped, bindings      *prometheus.Desc
	draining               *prometheus.Desc
}

var _ prometheus.Collector = (*sourceCollector)(nil)

func newSourceCollector(s Sources) *sourceCollector {
	return &sourceCollector{
		s: s,
		active: prometheus.NewDesc("ferry_allocations_active",
			"Live allocations, by client transport and relay address family.", []string{"transport", "family"}, nil),
		created: prometheus.NewDesc("ferry_allocations_created_total",
			"Allocations created, by client transport and relay address family.", []string{"transport", "family"}, nil),
		ended: prometheus.NewDesc("ferry_allocations_ended_total",
			"Allocations ended, by reason: expired (lifetime ran out, released by the client, its connection closed, or shutdown) or admin (closed through the admin API).",
			[]string{"reason"}, nil),
		packets: prometheus.NewDesc("ferry_relay_packets_total",
			"Packets relayed, by direction: to_peer (client to peer) or from_peer (peer to client). TCP relays count reads and writes.",
			[]string{"direction"}, nil),
		bytes: prometheus.NewDesc("ferry_relay_bytes_total",
			"Application bytes relayed, by direction: to_peer or from_peer.", []string{"direction"}, nil),
		dropped: prometheus.NewDesc("ferry_packets_dropped_total",
			"Packets dropped, by reason: malformed (not STUN or ChannelData), oversized (MTU or more), invalid_frame (stream connection ended), policy (from a peer without a permission), rate_limit (a client IP over its request or refused-credential rate), bandwidth_cap (over a relay bandwidth cap).",
			[]string{"reason"}, nil),
		bindings: prometheus.NewDesc("ferry_stun_binding_requests_total",
			"STUN Binding requests received, on listeners and RFC 5780 alternate sockets.", nil, nil),
		draining: prometheus.NewDesc("ferry_server_draining",
			"1 while the server drains (refuses new allocations before exiting), else 0.", nil, nil),
	}
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.active, c.created, c.ended, c.packets, c.bytes, c.dropped, c.bindings, c.draining} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Tracker.Stats()
	for _, tr := range transports() {
		for _, fam := range families() {
			k := relay.Class{Transport: tr, Family: fam}
			ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(st.Active[k]), tr, fam)
			ch <- prometheus.MustNewConstMetric(c.created, prometheus.CounterValue, float64(st.Created[k]), tr, fam)
		}
	}
	for _, r := range endReasons() {
		ch <- prometheus.MustNewConstMetric(c.ended, prometheus.CounterValue, float64(st.Ended[r]), r)
	}
	t := st.Traffic
	for _, d := range []struct {
		name           string
		packets, bytes uint64
	}{{"to_peer", t.ToPeerPackets, t.ToPeerBytes}, {"from_peer", t.FromPeerPackets, t.FromPeerBytes}} {
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(d.packets), d.name)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(d.bytes), d.name)
	}
	e := c.s.Edge.Snapshot()
	drops := map[string]uint64{
		"malformed":     e.Malformed,
		"oversized":     e.Oversized,
		"invalid_frame": e.InvalidFrames,
		"policy":        st.Dropped,
		"rate_limit":    e.RateLimited + e.AuthLimited,
	}
	if c.s.Quota != nil {
		drops["bandwidth_cap"] = c.s.Quota().DroppedPackets
	}
	for _, r := range dropReasons() {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(drops[r]), r)
	}
	ch <- prometheus.MustNewConstMetric(c.bindings, prometheus.CounterValue,
		float64(e.BindingRequests+c.s.STUN.Snapshot().Alternate))
	draining := 0.0
	if c.s.Draining != nil && c.s.Draining() {
		draining = 1
	}
	ch <- prometheus.MustNewConstMetric(c.draining, prometheus.GaugeValue, draining)
}
