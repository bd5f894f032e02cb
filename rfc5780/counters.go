package rfc5780

import "sync/atomic"

// Counters counts what Responders answered. The zero value is ready to use;
// one Counters may be shared by any number of Responders. Counting is
// lock-free.
type Counters struct {
	answered  atomic.Uint64
	alternate atomic.Uint64
	changed   atomic.Uint64
	rejected  atomic.Uint64
	dropped   atomic.Uint64
}

// CounterValues is a point-in-time copy of Counters, for metrics code.
type CounterValues struct {
	// Answered counts Binding requests answered with a success response.
	Answered uint64
	// Alternate counts those of them that arrived on an alternate socket.
	Alternate uint64
	// Changed counts success responses sent from another address or port
	// because the request carried CHANGE-REQUEST with a flag set.
	Changed uint64
	// Rejected counts Binding requests answered with an error: 420 for
	// CHANGE-REQUEST without alternates or for RESPONSE-PORT, 400 for a
	// malformed CHANGE-REQUEST.
	Rejected uint64
	// Dropped counts Binding requests not answered: malformed, a wrong
	// FINGERPRINT, an unusable source address, a failed send, and datagrams
	// other than Binding requests arriving on an alternate socket.
	Dropped uint64
}

// Snapshot returns the current totals; each field is read atomically.
func (c *Counters) Snapshot() CounterValues {
	if c == nil {
		return CounterValues{}
	}
	return CounterValues{
		Answered:  c.answered.Load(),
		Alternate: c.alternate.Load(),
		Changed:   c.changed.Load(),
		Rejected:  c.rejected.Load(),
		Dropped:   c.dropped.Load(),
	}
}
