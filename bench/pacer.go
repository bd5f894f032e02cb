package bench

import "time"

// pacer spreads a fixed rate over time on an absolute schedule: by elapsed
// time t it has released rate*t+1 packets (the first at t=0), so a late
// tick catches up instead of drifting. It releases at most burst per call
// and skips the rest of a larger backlog, so a stalled sender does not
// flood the server afterwards (the offered rate then falls short, which
// the report shows).
type pacer struct {
	// offset delays this pacer's schedule: flows are spread over one
	// packet interval so that they do not all send at the same instant.
	offset  time.Duration
	rate    uint64 // packets per second
	burst   int
	limit   uint64 // total packets; 0 means no limit
	sent    uint64
	skipped uint64 // schedule slots given up after stalls
}

// due returns how many packets to send now, elapsed after the start, and
// counts them as sent.
func (p *pacer) due(elapsed time.Duration) int {
	elapsed -= p.offset
	if elapsed < 0 {
		return 0
	}
	want := uint64(elapsed)/uint64(time.Microsecond)*p.rate/1e6 + 1 - p.skipped
	if p.limit > 0 && want > p.limit {
		want = p.limit
	}
	if want <= p.sent {
		return 0
	}
	n := want - p.sent
	if n > uint64(p.burst) {
		p.skipped += n - uint64(p.burst)
		n = uint64(p.burst)
	}
	p.sent += n
	return int(n)
}

// done reports whether the count limit is reached.
func (p *pacer) done() bool { return p.limit > 0 && p.sent >= p.limit }
