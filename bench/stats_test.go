package bench

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value falls in a bucket whose bounds contain it, buckets are
	// contiguous, and widths stay within 1/32 of the value.
	prevHi := uint64(0)
	for i := range histBuckets {
		lo, w := histBounds(i)
		if lo != prevHi {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		prevHi = lo + w
		if lo >= 2*histSub && float64(w)/float64(lo) > 1.0/histSub+1e-9 {
			t.Fatalf("bucket %d [%d,+%d) too wide", i, lo, w)
		}
	}
	if prevHi != histMaxNS+1 {
		t.Fatalf("last bucket ends at %d, want %d", prevHi, uint64(histMaxNS)+1)
	}
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 123456789, histMaxNS} {
		i := histIndex(v)
		lo, w := histBounds(i)
		if v < lo || v >= lo+w {
			t.Errorf("value %d in bucket %d = [%d,+%d)", v, i, lo, w)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	uniform := func(n int, step time.Duration) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = time.Duration(i+1) * step
		}
		return out
	}
	shuffled := uniform(10000, time.Microsecond)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
		relErr float64
	}{
		{"empty", nil, 0.5, 0, 0},
		{"single", []time.Duration{42 * time.Microsecond}, 0.99, 42 * time.Microsecond, 0},
		{"small exact values", []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5, 5, 0},
		{"uniform p50", uniform(1000, time.Microsecond), 0.5, 500 * time.Microsecond, 1.0 / 64},
		{"uniform p99", uniform(1000, time.Microsecond), 0.99, 990 * time.Microsecond, 1.0 / 64},
		{"uniform p100 is the max", uniform(1000, time.Microsecond), 1, 1000 * time.Microsecond, 0},
		{"order does not matter", shuffled, 0.9, 9000 * time.Microsecond, 1.0 / 64},
		{"outlier does not move p50", append(uniform(99, 100*time.Microsecond), time.Hour), 0.5, 5 * time.Millisecond, 1.0 / 64},
		{"negative clamps to 0", []time.Duration{-5, -1}, 0.5, 0, 0},
		{"huge clamps", []time.Duration{time.Hour}, 0.5, histMaxNS, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			got := h.quantile(tt.q)
			if d := math.Abs(float64(got - tt.want)); d > tt.relErr*float64(tt.want) {
				t.Fatalf("quantile(%v) = %v, want %v ±%.1f%%", tt.q, got, tt.want, 100*tt.relErr)
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all histogram
	for i := range 1000 {
		d := time.Duration(i*i) * time.Nanosecond
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	var m histogram
	m.merge(&a)
	m.merge(&b)
	m.merge(&histogram{})
	if m != all {
		t.Fatalf("merged histogram differs: n %d/%d min %d/%d max %d/%d", m.n, all.n, m.min, all.min, m.max, all.max)
	}
	l := m.latency()
	if l.Samples != 1000 || l.P50 <= 0 || l.P99 < l.P90 || l.P90 < l.P50 || l.Max < l.P99 {
		t.Fatalf("latency %+v", l)
	}
}
