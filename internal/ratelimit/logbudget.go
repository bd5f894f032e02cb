package ratelimit

import "sync/atomic"

// LogBudget bounds one kind of log line that outsiders can cause (a refused
// credential, a refused peer): a burst, then a few lines a period, with a
// count of the lines left out for a periodic "N similar lines suppressed"
// line. The zero LogBudget is full and ready to use; the Rate is given on
// each call. It is safe for concurrent use and does not lock or allocate.
type LogBudget struct {
	bucket     Bucket
	suppressed atomic.Uint64
	// since is the time (on the callers' clock, plus one so that 0 means
	// none) of the first line left out since the last report.
	since atomic.Int64
}

// Allow takes one line from the budget at now (nanoseconds on a monotonic
// clock shared by every call) and reports whether it may be written; a
// line that may not is counted for Suppressed.
func (b *LogBudget) Allow(r Rate, now int64) bool {
	if b.bucket.Take(r, now, 1) {
		return true
	}
	b.suppressed.Add(1)
	b.since.CompareAndSwap(0, now+1)
	return false
}

// Suppressed returns the number of lines left out when the first of them is
// at least every old at now, and resets the count; it returns 0 otherwise,
// and how long the report covers. Call it periodically: the caller that
// gets a non-zero count writes the "N similar lines suppressed" line, so
// every line left out is reported once.
func (b *LogBudget) Suppressed(now, every int64) (n uint64, over int64) {
	since := b.since.Load()
	if since == 0 || now-(since-1) < every {
		return 0, 0
	}
	if !b.since.CompareAndSwap(since, 0) {
		return 0, 0 // another caller reports
	}
	return b.suppressed.Swap(0), now - (since - 1)
}
