package metrics

import (
	"errors"
	"testing"

	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/offload"
)

// programCounters stands in for the loaded program's per-CPU counters.
type programCounters struct {
	st  offload.Stats
	err error
	at  []offload.Attachment
}

func (p *programCounters) Stats() (offload.Stats, error)  { return p.st, p.err }
func (p *programCounters) Attached() []offload.Attachment { return p.at }

func TestFastPathAtScrape(t *testing.T) {
	prog := &programCounters{
		st: offload.Stats{ToPeer: 7, FromPeer: 5, ChannelToChannel: 2, PassNotChannel: 11, PassMTU: 3, PassFIB: 1, DropError: 0},
		at: []offload.Attachment{{Interface: "eth0", Mode: "tc"}, {Interface: "eth1", Mode: "xdp"}},
	}
	m := New(Source{
		Stats:            func() engine.Snapshot { return engine.Snapshot{OffloadedToPeer: 9, OffloadedFromPeer: 4} },
		FastPath:         prog,
		FastPathChannels: func() (uint64, uint64) { return 6, 2 },
	}, nil)
	fams := gather(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ferry_offload_enabled", nil, 1},
		{"ferry_offload_attached", map[string]string{"interface": "eth1", "mode": "xdp"}, 1},
		{"ferry_offload_channels", nil, 6},
		{"ferry_offload_install_failures_total", nil, 2},
		{"ferry_relay_offloaded_packets_total", map[string]string{"direction": "to_peer"}, 9},
		{"ferry_relay_offloaded_packets_total", map[string]string{"direction": "from_peer"}, 4},
		{"ferry_offload_packets_total", map[string]string{"path": "channel_to_channel"}, 2},
		{"ferry_offload_passed_total", map[string]string{"reason": "not_channel"}, 11},
		{"ferry_offload_passed_total", map[string]string{"reason": "mtu"}, 3},
		{"ferry_offload_passed_total", map[string]string{"reason": "no_route"}, 1},
		{"ferry_offload_errors_total", nil, 0},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// Off: only the switch, at 0.
	fams = gather(t, testMetrics(t, engine.Snapshot{}, false))
	if got := value(t, fams, "ferry_offload_enabled", nil); got != 0 {
		t.Errorf("ferry_offload_enabled = %v with the fast path off", got)
	}
	if _, ok := fams["ferry_offload_packets_total"]; ok {
		t.Error("program counters exported with the fast path off")
	}

	// A program whose counters cannot be read fails the scrape of those
	// metrics only.
	prog.err = errors.New("map gone")
	if _, err := m.Registry().Gather(); err == nil {
		t.Error("an unreadable program counter went unreported")
	}
}
