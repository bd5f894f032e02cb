package ratelimit

import (
	"math"
	"sync/atomic"
	"time"
)

// Rate is an immutable limit: Per units per Period on average, with Burst
// units at once. The zero Rate is unlimited.
type Rate struct {
	period int64 // nanoseconds
	per    int64 // units per period; 0: unlimited
	tol    int64 // burst tolerance, nanoseconds
}

// NewRate returns a limit of per units every period with bursts of up to
// burst units. per <= 0 means unlimited; burst is raised to at least 1.
func NewRate(per int64, period time.Duration, burst int64) Rate {
	if per <= 0 || period <= 0 {
		return Rate{}
	}
	burst = max(burst, 1)
	r := Rate{period: int64(period), per: per}
	r.tol = r.cost(burst)
	return r
}

// Unlimited reports whether r admits everything.
func (r Rate) Unlimited() bool { return r.per == 0 }

// cost is how long n units occupy the bucket, in nanoseconds; it saturates
// instead of overflowing.
func (r Rate) cost(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if n > math.MaxInt64/r.period {
		return math.MaxInt64 / 4
	}
	return n * r.period / r.per
}

// Bucket is one GCRA token bucket: the theoretical arrival time of the next
// unit. The zero value is a full bucket. It is safe for concurrent use and
// does not lock or allocate.
type Bucket struct {
	tat atomic.Int64
}

// Take takes n units at time now (nanoseconds on any monotonic clock shared
// by every call) if the bucket holds them, and reports whether it did.
func (b *Bucket) Take(r Rate, now, n int64) bool {
	if r.per == 0 {
		return true
	}
	c := r.cost(n)
	for {
		tat := b.tat.Load()
		next := max(tat, now) + c
		if next-now > r.tol {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

// Empty reports whether taking n units at now would fail, without taking.
func (b *Bucket) Empty(r Rate, now, n int64) bool {
	if r.per == 0 {
		return false
	}
	return max(b.tat.Load(), now)+r.cost(n)-now > r.tol
}

// Refund returns n units taken earlier.
func (b *Bucket) Refund(r Rate, n int64) {
	if r.per != 0 {
		b.tat.Add(-r.cost(n))
	}
}

// Reserve takes n units whether or not the bucket holds them and returns
// how long the caller must wait before using them (0 when they were
// there): a shaper for streams, where excess cannot be dropped.
func (b *Bucket) Reserve(r Rate, now, n int64) time.Duration {
	if r.per == 0 {
		return 0
	}
	c := r.cost(n)
	for {
		tat := b.tat.Load()
		next := max(tat, now) + c
		if b.tat.CompareAndSwap(tat, next) {
			return time.Duration(max(next-r.tol-now, 0))
		}
	}
}
