package bench

import (
	"testing"
	"time"
)

func TestPacer(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		p     pacer
		ticks []time.Duration // elapsed at each call
		want  []int
	}{
		{"first packet at zero", pacer{rate: 1000, burst: 10}, []time.Duration{0, 0, 500 * time.Microsecond}, []int{1, 0, 0}},
		{"steady 1 per ms", pacer{rate: 1000, burst: 10}, []time.Duration{0, ms, 2 * ms, 3 * ms}, []int{1, 1, 1, 1}},
		{"bursts every 5ms", pacer{rate: 1000, burst: 10}, []time.Duration{0, 5 * ms, 10 * ms}, []int{1, 5, 5}},
		{"late tick catches up", pacer{rate: 1000, burst: 10}, []time.Duration{0, ms, 4 * ms, 5 * ms}, []int{1, 1, 3, 1}},
		{"stall beyond burst skips", pacer{rate: 1000, burst: 4}, []time.Duration{0, 100 * ms, 101 * ms, 102 * ms}, []int{1, 4, 1, 1}},
		{"count limit", pacer{rate: 1000, burst: 100, limit: 7}, []time.Duration{0, 5 * ms, 10 * ms, 20 * ms}, []int{1, 5, 1, 0}},
		{"slow rate", pacer{rate: 10, burst: 4}, []time.Duration{0, 50 * ms, 99 * ms, 100 * ms, 250 * ms}, []int{1, 0, 0, 1, 1}},
		{"negative elapsed", pacer{rate: 1000, burst: 4}, []time.Duration{-ms}, []int{0}},
		{"offset delays the schedule", pacer{offset: 3 * ms, rate: 1000, burst: 4}, []time.Duration{0, 2 * ms, 3 * ms, 4 * ms}, []int{0, 0, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			for i, e := range tt.ticks {
				if got := p.due(e); got != tt.want[i] {
					t.Fatalf("call %d at %v: due %d, want %d (sent %d, skipped %d)", i, e, got, tt.want[i], p.sent, p.skipped)
				}
			}
		})
	}
}

func TestPacerLongRunRate(t *testing.T) {
	// Over 10 s of 5 ms ticks the pacer releases rate*10+1 packets exactly.
	for _, rate := range []uint64{1, 50, 500, 12345} {
		p := pacer{rate: rate, burst: int(rate/100 + 4)}
		total := 0
		for e := time.Duration(0); e <= 10*time.Second; e += 5 * time.Millisecond {
			total += p.due(e)
		}
		if want := int(rate*10 + 1); total != want {
			t.Errorf("rate %d: %d packets in 10s, want %d", rate, total, want)
		}
	}
}

func TestSplitCount(t *testing.T) {
	tests := []struct {
		total, n int
		want     []uint64
	}{
		{0, 3, []uint64{0, 0, 0}},
		{10, 3, []uint64{4, 3, 3}},
		{3, 3, []uint64{1, 1, 1}},
		{100, 1, []uint64{100}},
	}
	for _, tt := range tests {
		got := splitCount(tt.total, tt.n)
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("splitCount(%d, %d) = %v, want %v", tt.total, tt.n, got, tt.want)
				break
			}
		}
	}
}
