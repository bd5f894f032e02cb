package httpapi

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// defaultMaxLimiters bounds each limiter map.
const defaultMaxLimiters = 10000

// limiters is a bounded map of token buckets, one per API key or client IP.
// When full, the least recently used bucket is evicted; a caller whose
// bucket was evicted starts again with a full one. It is safe for
// concurrent use.
type limiters struct {
	mu  sync.Mutex
	max int
	m   map[string]*list.Element // value: *bucket
	lru list.List                // front: most recently used
}

type bucket struct {
	key string
	lim *rate.Limiter
}

func newLimiters(max int) *limiters {
	if max <= 0 {
		max = defaultMaxLimiters
	}
	return &limiters{max: max, m: make(map[string]*list.Element)}
}

// allow takes one token from key's bucket at now, creating the bucket (full,
// with l) when there is none and updating its settings when l changed on
// reload. When no token is left it takes none and reports how long until one
// is.
func (ls *limiters) allow(key string, now time.Time, l limit) (ok bool, retryAfter time.Duration) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var lim *rate.Limiter
	if e, found := ls.m[key]; found {
		ls.lru.MoveToFront(e)
		lim = e.Value.(*bucket).lim
		if lim.Limit() != l.every {
			lim.SetLimitAt(now, l.every)
		}
		if lim.Burst() != l.burst {
			lim.SetBurstAt(now, l.burst)
		}
	} else {
		lim = rate.NewLimiter(l.every, l.burst)
		ls.m[key] = ls.lru.PushFront(&bucket{key: key, lim: lim})
		for ls.lru.Len() > ls.max {
			old := ls.lru.Back()
			ls.lru.Remove(old)
			delete(ls.m, old.Value.(*bucket).key)
		}
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Duration(math.MaxInt64)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// len returns the number of buckets held.
func (ls *limiters) len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.lru.Len()
}
