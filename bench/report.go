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
	Srv     *Process `json:"server,omitempty"`
	Gen     *Process `json:"generator"`
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
	// RSSPerAlloc is the RSS growth over setup divided by the allocations
	// (relay mode; the server's only).
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
		if v := p.p.RSSPerAlloc; v != nil {
			fmt.Fprintf(&b, " (%+.2f KiB/allocation)", *v)
		}
		fmt.Fprintf(&b, " -> %d KiB at end\n", p.p.RSSEndKiB)
	}
	for _, w := range r.Warning {
		fmt.Fprintf(&b, "  warning:    %s\n", w)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
