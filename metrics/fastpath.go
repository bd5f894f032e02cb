package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryrtc/ferry/offload"
)

// FastPath is the kernel fast path as the metrics read it
// (*offload.Offload).
type FastPath interface {
	Stats() (offload.Stats, error)
	Attached() []offload.Attachment
}

// fastPathCollector reads the fast path's program counters when scraped,
// and the engine's count of the packets it relayed.
type fastPathCollector struct {
	src Source

	enabled, attached, channels *prometheus.Desc
	installFailures             *prometheus.Desc
	relayed, packets, passed    *prometheus.Desc
	errors                      *prometheus.Desc
}

// passReasons names the program's reasons to leave a packet to user
// space, in the order of passCounts.
var passReasons = [...]string{"not_udp", "fragment", "ipv6_extension", "malformed", "not_channel", "no_entry",
	"expired", "bad_length", "mtu", "no_route", "checksum_partial", "resize"}

func passCounts(s *offload.Stats) [len(passReasons)]uint64 {
	return [...]uint64{s.PassNotUDP, s.PassFragment, s.PassIPv6Ext, s.PassMalformed, s.PassNotChannel, s.PassNoEntry,
		s.PassExpired, s.PassBadLength, s.PassMTU, s.PassFIB, s.PassChecksumPartial, s.PassAdjust}
}

func newFastPathCollector(src Source) *fastPathCollector {
	return &fastPathCollector{
		src: src,
		enabled: prometheus.NewDesc("ferry_offload_enabled",
			"1 when the kernel fast path (relay.offload) is attached, 0 when ferry relays everything in user space (its start log says why).", nil, nil),
		attached: prometheus.NewDesc("ferry_offload_attached",
			"Interfaces the fast path's program is attached to, by interface and mode (tc, xdp, xdp-generic).", []string{"interface", "mode"}, nil),
		channels: prometheus.NewDesc("ferry_offload_channels",
			"Channel bindings installed in the kernel fast path now.", nil, nil),
		installFailures: prometheus.NewDesc("ferry_offload_install_failures_total",
			"Channel bindings the kernel refused to install (they relay in user space), e.g. with the fast path's table full.", nil, nil),
		relayed: prometheus.NewDesc("ferry_relay_offloaded_packets_total",
			"Relayed packets the kernel fast path carried, by direction; also counted in ferry_relay_packets_total (read from the kernel every second).", []string{"direction"}, nil),
		packets: prometheus.NewDesc("ferry_offload_packets_total",
			"Packets the fast path's program rewrote, by path: to_peer (ChannelData to UDP), from_peer (UDP to ChannelData), channel_to_channel (between two of ferry's relays).", []string{"path"}, nil),
		passed: prometheus.NewDesc("ferry_offload_passed_total",
			"Packets the fast path's program left to user space, by reason: not_udp, fragment (IPv4 options or fragment), ipv6_extension, malformed, not_channel (STUN and other non-ChannelData), no_entry, expired, bad_length (ChannelData length), mtu (too large after growth), no_route (no route or neighbour yet), checksum_partial, resize.", []string{"reason"}, nil),
		errors: prometheus.NewDesc("ferry_offload_errors_total",
			"Packets the fast path's program dropped because a step failed after it had changed them (should stay 0).", nil, nil),
	}
}

func (c *fastPathCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.enabled, c.attached, c.channels, c.installFailures, c.relayed, c.packets, c.passed, c.errors} {
		ch <- d
	}
}

func (c *fastPathCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	fp := c.src.FastPath
	var on uint64
	if fp != nil {
		if at := fp.Attached(); len(at) > 0 {
			on = 1
			for _, a := range at {
				gauge(c.attached, 1, a.Interface, a.Mode)
			}
		}
	}
	gauge(c.enabled, on)
	if on == 0 {
		return
	}
	if c.src.FastPathChannels != nil {
		installed, refused := c.src.FastPathChannels()
		gauge(c.channels, installed)
		counter(c.installFailures, refused)
	}
	if c.src.Stats != nil {
		es := c.src.Stats()
		counter(c.relayed, es.OffloadedToPeer, "to_peer")
		counter(c.relayed, es.OffloadedFromPeer, "from_peer")
	}
	st, err := fp.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.packets, err)
		return
	}
	counter(c.packets, st.ToPeer, "to_peer")
	counter(c.packets, st.FromPeer, "from_peer")
	counter(c.packets, st.ChannelToChannel, "channel_to_channel")
	for i, n := range passCounts(&st) {
		counter(c.passed, n, passReasons[i])
	}
	counter(c.errors, st.DropError)
}
