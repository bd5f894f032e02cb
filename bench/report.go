package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// Report is the result of a run. Its JSON form is what `ferry bench --json`
// prints and scripts/bench-vs-coturn.sh reads.
type Report struct {
	Mode        Mode   `json:"mode"`
	Transport   string `json:"transport"`
	Server      string `json:"target"` // the TURN server address
	Allocations int    `json:"allocations"`
	Size        int    `json:"size"`
	Rate        int    `json:"rate_pps_per_allocation"` // 0: max (window)
	Window      int    `json:"window,omitempty"`
	// IO is how relay mode drove the sockets: "polled" (every tick, without
	// blocking) or "blocking" (a goroutine per socket).
	IO        string  `json:"io,omitempty"`
	DurationS float64 `json:"duration_s"` // measured phase

	Setup   *Setup   `json:"setup,omitempty"`
	Relay   *Relay   `json:"relay,omitempty"`
	Allocs  *Allocs  `json:"allocs,omitempty"`
	Idle    *Idle    `json:"idle,omitempty"`
	Srv     *Process `json:"server,omitempty"`
	Gen     *Process `json:"generator"`
	Group   *Group   `json:"cgroup,omitempty"`
	Warning []string `json:"warnings,omitempty"`
}

// Setup is opening the relay-mode allocations.
type Setup struct {
	Seconds     float64 `json:"seconds"`
	AllocsPerS  float64 `json:"allocations_per_s"`
	ReleaseErrs int     `json:"release_errors"`
}

// Relay is the relay-mode result. A round trip is two relayed packets:
// client to peer and peer back to client.
type Relay struct {
	Sent         uint64  `json:"sent"`
	PeerReceived uint64  `json:"peer_received"`
	Received     uint64  `json:"received"`
	Relayed      uint64  `json:"relayed_packets"` // peer_received + received
	OfferedPPS   float64 `json:"offered_pps"`
	RelayedPPS   float64 `json:"relayed_pps"`
	Mbps         float64 `json:"mbit_per_s"` // relayed payload bits
	LossPct      float64 `json:"loss_pct"`   // round trips not back, of sent
	RTT          Latency `json:"rtt"`
	Invalid      uint64  `json:"invalid"` // ChannelData of the wrong channel or size
	Other        uint64  `json:"other"`   // non-ChannelData from the server
	SendErrors   uint64  `json:"send_errors"`
	PeerErrors   uint64  `json:"peer_errors"`
	FirstError   string  `json:"first_error,omitempty"`
}

// Allocs is the allocs-mode result.
type Allocs struct {
	Opened     uint64  `json:"opened"`
	Released   uint64  `json:"released"`
	Failed     uint64  `json:"failed"`
	PerSecond  float64 `json:"allocations_per_s"`
	Allocate   Latency `json:"allocate_latency"` // both round trips
	FirstError string  `json:"first_error,omitempty"`
}

// Idle is the idle-mode result: allocations held open without traffic. The
// server's RSS growth per allocation is in Report.Srv.
type Idle struct {
	Opened       uint64  `json:"opened"`
	Failed       uint64  `json:"failed"`
	SetupSeconds float64 `json:"setup_seconds"`
	AllocsPerS   float64 `json:"setup_allocations_per_s"`
	HeldSeconds  float64 `json:"held_seconds"`
	ReleaseErrs  int     `json:"release_errors"`
	FirstError   string  `json:"first_error,omitempty"`
}

// Group is the CPU time of the processes in a cgroup (Config.Cgroup: the
// server and the generator, so kernel work done in either one's context is
// counted wherever it lands) and of the kernel's ksoftirqd threads (softirq
// work deferred out of every process), over the measured phase.
type Group struct {
	Path       string  `json:"path"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPct     float64 `json:"cpu_pct"` // of one core
	// SoftirqdSeconds is the ksoftirqd threads' CPU time (machine-wide:
	// other traffic on the machine counts too).
	SoftirqdSeconds float64 `json:"ksoftirqd_cpu_seconds"`
	// MachinePct is the whole machine's busy CPU time (/proc/stat, in % of
	// one core); OtherPct is what of it neither the cgroup nor ksoftirqd
	// used: other processes, a disturbed measurement when large (tick
	// sampled, so a few % either way is noise). StealPct is time the
	// hypervisor gave to other guests.
	MachinePct float64 `json:"machine_cpu_pct"`
	OtherPct   float64 `json:"other_cpu_pct"`
	StealPct   float64 `json:"steal_cpu_pct"`
	// CPUPerPacket is the cgroup's µs per relayed packet; WithSoftirqd adds
	// the ksoftirqd threads' (relay mode).
	CPUPerPacket *float64 `json:"cpu_us_per_packet,omitempty"`
	WithSoftirqd *float64 `json:"with_ksoftirqd_us_per_packet,omitempty"`
	// CPUPerAlloc is the cgroup's µs per allocation (allocs mode).
	CPUPerAlloc *float64 `json:"cpu_us_per_allocation,omitempty"`
}

// newGroup builds a Group from CPU deltas over measured; units (relayed
// packets or allocations, by perPacket) divide them when positive.
func newGroup(path string, cpu, softirq time.Duration, machine cpuTimes, measured time.Duration, units uint64, perPacket bool) *Group {
	g := &Group{
		Path:            path,
		CPUSeconds:      round(cpu.Seconds(), 4),
		SoftirqdSeconds: round(softirq.Seconds(), 4),
	}
	if measured > 0 {
		pct := func(d time.Duration) float64 { return round(100*d.Seconds()/measured.Seconds(), 1) }
		g.CPUPct = pct(cpu)
		g.MachinePct = pct(machine.busy)
		g.OtherPct = pct(max(0, machine.busy-cpu-softirq))
		g.StealPct = pct(machine.steal)
	}
	if units > 0 {
		per := cpu.Seconds() * 1e6 / float64(units)
		if perPacket {
			g.CPUPerPacket = ptr(round(per, 4))
			g.WithSoftirqd = ptr(round((cpu+softirq).Seconds()*1e6/float64(units), 4))
		} else {
			g.CPUPerAlloc = ptr(round(per, 2))
		}
	}
	return g
}

// Process is CPU and memory of the server (with --server-pid) or of the
// generator, over the measured phase.
type Process struct {
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"`
	CPUPct     float64 `json:"cpu_pct"` // of one core
	// CPUPerPacket is µs of CPU per relayed packet (relay mode).
	CPUPerPacket *float64 `json:"cpu_us_per_packet,omitempty"`
	// CPUPerAlloc is µs of CPU per allocation opened and released (allocs
	// mode).
	CPUPerAlloc *float64 `json:"cpu_us_per_allocation,omitempty"`
	RSSStartKiB uint64   `json:"rss_kib_start"`
	// RSSSetupKiB is RSS once the relay-mode allocations are open.
	RSSSetupKiB *uint64 `json:"rss_kib_after_setup,omitempty"`
	// RSSHeldKiB is RSS at the end of the idle-mode hold.
	RSSHeldKiB *uint64 `json:"rss_kib_held,omitempty"`
	// RSSPerAlloc is the RSS growth divided by the allocations (the
	// server's only): over setup in relay mode, from before setup to the
	// end of the hold in idle mode.
	RSSPerAlloc *float64 `json:"rss_kib_per_allocation,omitempty"`
	RSSEndKiB   uint64   `json:"rss_kib_end"`
}

func ptr[T any](v T) *T { return &v }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// newProcess builds a Process from the CPU used over measured and RSS
// readings at the start and at the end.
func newProcess(pid int, cpu, measured time.Duration, rssStart, rssEnd uint64) *Process {
	p := &Process{
		PID:         pid,
		CPUSeconds:  round(cpu.Seconds(), 3),
		RSSStartKiB: rssStart,
		RSSEndKiB:   rssEnd,
	}
	if measured > 0 {
		p.CPUPct = round(100*cpu.Seconds()/measured.Seconds(), 1)
	}
	return p
}

// WriteText prints r for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	rate := fmt.Sprintf("%d pps/allocation", r.Rate)
	if r.Rate == 0 {
		rate = fmt.Sprintf("max, window %d/allocation", r.Window)
	}
	fmt.Fprintf(&b, "ferry bench: %s over %s to %s, %d allocations", r.Mode, r.Transport, r.Server, r.Allocations)
	if r.Mode == ModeRelay {
		fmt.Fprintf(&b, ", %d-byte payloads, %s, %s I/O", r.Size, rate, r.IO)
	}
	fmt.Fprintf(&b, ", %.2fs\n", r.DurationS)
	if s := r.Setup; s != nil {
		fmt.Fprintf(&b, "  setup:      %.3fs (%.0f allocations/s)", s.Seconds, s.AllocsPerS)
		if s.ReleaseErrs > 0 {
			fmt.Fprintf(&b, ", %d release errors", s.ReleaseErrs)
		}
		b.WriteString("\n")
	}
	if x := r.Relay; x != nil {
		fmt.Fprintf(&b, "  relayed:    %.0f packets/s (%d packets), %.2f Mbit/s payload\n", x.RelayedPPS, x.Relayed, x.Mbps)
		fmt.Fprintf(&b, "  offered:    %.0f packets/s; sent %d, peer got %d, back %d, loss %.3f%%\n",
			x.OfferedPPS, x.Sent, x.PeerReceived, x.Received, x.LossPct)
		fmt.Fprintf(&b, "  rtt:        p50 %.1fµs  p90 %.1fµs  p99 %.1fµs  max %.1fµs  (%d samples)\n",
			x.RTT.P50, x.RTT.P90, x.RTT.P99, x.RTT.Max, x.RTT.Samples)
		if x.Invalid+x.Other+x.SendErrors+x.PeerErrors > 0 {
			fmt.Fprintf(&b, "  anomalies:  invalid %d, other %d, send errors %d, peer errors %d %s\n",
				x.Invalid, x.Other, x.SendErrors, x.PeerErrors, x.FirstError)
		}
	}
	if d := r.Idle; d != nil {
		fmt.Fprintf(&b, "  idle:       %d allocations open (%d failed) in %.3fs (%.0f/s), held %.2fs",
			d.Opened, d.Failed, d.SetupSeconds, d.AllocsPerS, d.HeldSeconds)
		if d.ReleaseErrs > 0 {
			fmt.Fprintf(&b, ", %d release errors", d.ReleaseErrs)
		}
		b.WriteString("\n")
		if d.FirstError != "" {
			fmt.Fprintf(&b, "  first error: %s\n", d.FirstError)
		}
	}
	if a := r.Allocs; a != nil {
		fmt.Fprintf(&b, "  allocs:     %.0f allocations/s (opened %d, released %d, failed %d)\n", a.PerSecond, a.Opened, a.Released, a.Failed)
		fmt.Fprintf(&b, "  allocate:   p50 %.1fµs  p99 %.1fµs\n", a.Allocate.P50, a.Allocate.P99)
		if a.FirstError != "" {
			fmt.Fprintf(&b, "  first error: %s\n", a.FirstError)
		}
	}
	for _, p := range []struct {
		name string
		p    *Process
	}{{"server", r.Srv}, {"generator", r.Gen}} {
		if p.p == nil {
			continue
		}
		fmt.Fprintf(&b, "  %-10s  pid %d: cpu %.3fs (%.1f%% of a core)", p.name+":", p.p.PID, p.p.CPUSeconds, p.p.CPUPct)
		if v := p.p.CPUPerPacket; v != nil {
			fmt.Fprintf(&b, ", %.3fµs/packet", *v)
		}
		if v := p.p.CPUPerAlloc; v != nil {
			fmt.Fprintf(&b, ", %.1fµs/allocation", *v)
		}
		fmt.Fprintf(&b, "; rss %d KiB", p.p.RSSStartKiB)
		if v := p.p.RSSSetupKiB; v != nil {
			fmt.Fprintf(&b, " -> %d KiB after setup", *v)
		}
		if v := p.p.RSSHeldKiB; v != nil {
			fmt.Fprintf(&b, " -> %d KiB held", *v)
		}
		if v := p.p.RSSPerAlloc; v != nil {
			fmt.Fprintf(&b, " (%+.2f KiB/allocation)", *v)
		}
		fmt.Fprintf(&b, " -> %d KiB at end\n", p.p.RSSEndKiB)
	}
	if g := r.Group; g != nil {
		fmt.Fprintf(&b, "  cgroup:     %s: cpu %.3fs (%.1f%% of a core)", g.Path, g.CPUSeconds, g.CPUPct)
		if v := g.CPUPerPacket; v != nil {
			fmt.Fprintf(&b, ", %.3fµs/packet (%.3fµs with ksoftirqd)", *v, *g.WithSoftirqd)
		}
		if v := g.CPUPerAlloc; v != nil {
			fmt.Fprintf(&b, ", %.1fµs/allocation", *v)
		}
		fmt.Fprintf(&b, "; ksoftirqd %.3fs; machine %.0f%%, others %.0f%%, steal %.0f%%\n", g.SoftirqdSeconds, g.MachinePct, g.OtherPct, g.StealPct)
	}
	for _, w := range r.Warning {
		fmt.Fprintf(&b, "  warning:    %s\n", w)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
