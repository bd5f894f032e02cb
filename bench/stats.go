package bench

import (
	"math"
	"math/bits"
	"time"
)

// histogram records durations in nanoseconds in log-linear buckets: exact
// below 64 ns, then 32 buckets per power of two, so a reported percentile is
// within 1/64 (1.6%) of a recorded value. Recording never allocates; one
// histogram belongs to one goroutine and is merged after it stops.
type histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      uint64
	min, max uint64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	// histMaxNS clamps recorded values (about 18 minutes).
	histMaxNS   = 1<<40 - 1
	histBuckets = (40-histSubBits)*histSub + histSub
)

// histIndex maps v (<= histMaxNS) to its bucket.
func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	e := bits.Len64(v) - (histSubBits + 1)
	return e*histSub + int(v>>e)
}

// histBounds returns the lowest value of bucket i and its width.
func histBounds(i int) (lo, width uint64) {
	if i < 2*histSub {
		return uint64(i), 1
	}
	e := i/histSub - 1
	m := uint64(i - e*histSub)
	return m << e, 1 << e
}

func (h *histogram) record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	if v > histMaxNS {
		v = histMaxNS
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
	h.counts[histIndex(v)]++
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// quantile returns the value at quantile q in [0, 1] (the bucket's
// midpoint, clamped to the recorded min and max), or 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := histBounds(i)
			v := lo + (w-1)/2
			v = max(h.min, min(h.max, v))
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Latency summarizes a histogram in microseconds.
type Latency struct {
	Samples uint64  `json:"samples"`
	P50     float64 `json:"p50_us"`
	P90     float64 `json:"p90_us"`
	P99     float64 `json:"p99_us"`
	Max     float64 `json:"max_us"`
	Mean    float64 `json:"mean_us"`
}

func (h *histogram) latency() Latency {
	us := func(d time.Duration) float64 { return math.Round(float64(d)/1e1) / 1e2 }
	return Latency{
		Samples: h.n,
		P50:     us(h.quantile(0.50)),
		P90:     us(h.quantile(0.90)),
		P99:     us(h.quantile(0.99)),
		Max:     us(time.Duration(h.max)),
		Mean:    us(h.mean()),
	}
}
