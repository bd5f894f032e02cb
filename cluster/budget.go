package cluster

import (
	"context"
	"log/slog"
	"maps"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Byte budgets (quota.user-bytes per quota.user-bytes-period): how many
// bytes each user may relay, both directions together, per period.
// Periods are aligned to the Unix epoch (a 24h period runs from 00:00
// UTC), so every node agrees on which one it is. The caller reports what
// each user relayed since its last call, once a second; the budget
// answers which users have spent theirs.
//
// With Redis, one pipeline per call adds this node's bytes to the hash
// P ubytes:SECONDS:N (SECONDS the period's length, N its number since the
// epoch) and reads the set P uover:SECONDS:N of users any node found
// over; a user this node finds over is added to it. A user's bytes go to
// Redis in chunks of a hundredth of the budget (Chunk), not every second,
// so Redis sees at most about a hundred additions per user and period
// however fast the user relays, and the cluster's count lags the truth by
// less than a chunk per node. So a user is stopped on every node within
// about a second of the cluster-wide total passing the budget (less the
// chunks not yet added). Both keys expire an hour after their period. When Redis does not answer, the node decides from
// what it knows (the users already over, and its own bytes against the
// whole budget), keeps the bytes Redis has not yet seen, and adds them
// when it answers again.

// BudgetOptions configure a Budget.
type BudgetOptions struct {
	// Client is the cluster's Redis; nil counts this node alone.
	Client redis.UniversalClient
	Prefix string
	// Limit is quota.user-bytes; Period quota.user-bytes-period.
	Limit  int64
	Period time.Duration
	// Chunk is how many bytes of a user a node gathers before it adds
	// them in Redis (default Limit/100, at least 64 KiB).
	Chunk int64
	// Timeout bounds one call's round with Redis (default 500ms).
	Timeout time.Duration
	Log     *slog.Logger
}

// Budget counts users' bytes per period. Update is not safe for
// concurrent use (one loop calls it); the counters are.
type Budget struct {
	o      BudgetOptions
	window int64
	// local is this node's bytes per user this period; pending what
	// Redis has not counted yet; seen the cluster's count at the last
	// addition.
	local, pending, seen map[string]int64
	over                 map[string]bool

	updates, fallbacks, locals, overs atomic.Uint64
}

// NewBudget returns a budget with nothing counted.
func NewBudget(o BudgetOptions) *Budget {
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Chunk <= 0 {
		o.Chunk = max(o.Limit/100, 64<<10)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Budget{o: o, window: -1, local: map[string]int64{}, pending: map[string]int64{}, seen: map[string]int64{}, over: map[string]bool{}}
}

// BudgetStats are a budget's counters: rounds counted in Redis, rounds
// that fell back to this node's own counts, rounds without a cluster, and
// users found over.
type BudgetStats struct {
	Updates, Fallbacks, Local, Overs uint64
}

// Stats returns the counters.
func (b *Budget) Stats() BudgetStats {
	return BudgetStats{Updates: b.updates.Load(), Fallbacks: b.fallbacks.Load(), Local: b.locals.Load(), Overs: b.overs.Load()}
}

// Window returns the number of the period now falls in.
func (b *Budget) Window(now time.Time) int64 { return now.UnixNano() / int64(b.o.Period) }

// keys are the Redis keys of period w.
func (b *Budget) keys(w int64) (bytes, over string) {
	s := strconv.FormatInt(int64(b.o.Period/time.Second), 10) + ":" + strconv.FormatInt(w, 10)
	return b.o.Prefix + "ubytes:" + s, b.o.Prefix + "uover:" + s
}

// Update adds deltas (bytes each user relayed since the last call) at
// now and returns the users whose budget for the period is spent, and
// whether that set changed since the last call. The map returned must
// not be modified.
func (b *Budget) Update(ctx context.Context, deltas map[string]int64, now time.Time) (map[string]bool, bool) {
	prev := b.over
	if w := b.Window(now); w != b.window {
		// A new period: everyone starts again. What Redis has not yet
		// counted of the last period is dropped.
		b.window = w
		clear(b.local)
		clear(b.pending)
		clear(b.seen)
		b.over = map[string]bool{}
	}
	for u, d := range deltas {
		if d > 0 {
			b.local[u] += d
			b.pending[u] += d
		}
	}
	next := maps.Clone(b.over)
	if b.o.Client != nil && b.redisRound(ctx, next) {
		b.updates.Add(1)
	} else {
		if b.o.Client != nil {
			b.fallbacks.Add(1)
		} else {
			b.locals.Add(1)
			clear(b.pending)
		}
		for u, n := range b.local {
			if n >= b.o.Limit {
				next[u] = true
			}
		}
	}
	for u := range next {
		if !b.over[u] {
			b.overs.Add(1)
		}
	}
	b.over = next
	return next, !maps.Equal(prev, next)
}

// redisRound adds the pending bytes in Redis and puts the users the
// cluster finds over into over; false when Redis did not answer.
func (b *Budget) redisRound(ctx context.Context, over map[string]bool) bool {
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	bytesKey, overKey := b.keys(b.window)
	ttl := b.o.Period + time.Hour
	var users []string
	var incr []*redis.IntCmd
	var members *redis.StringSliceCmd
	_, err := b.o.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for u, d := range b.pending {
			// A chunk's worth, or what would reach the budget with
			// the cluster's count as last seen.
			if d >= b.o.Chunk || b.seen[u]+d >= b.o.Limit {
				users = append(users, u)
				incr = append(incr, p.HIncrBy(ctx, bytesKey, u, d))
			}
		}
		if len(users) > 0 {
			p.Expire(ctx, bytesKey, ttl)
		}
		members = p.SMembers(ctx, overKey)
		return nil
	})
	if err != nil {
		b.o.Log.Debug("cluster: byte budgets not updated", "err", err)
		return false
	}
	for i, u := range users {
		delete(b.pending, u)
		b.seen[u] = incr[i].Val()
	}
	published := map[string]bool{}
	for _, u := range members.Val() {
		over[u] = true
		published[u] = true
	}
	// Over by this round's count and not yet in the set (also one this
	// node stopped on its own while Redis was away): publish it.
	var found []any
	for i, u := range users {
		if incr[i].Val() >= b.o.Limit && !published[u] {
			found = append(found, u)
		}
	}
	if len(found) > 0 {
		_, err := b.o.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.SAdd(ctx, overKey, found...)
			p.Expire(ctx, overKey, ttl)
			return nil
		})
		if err != nil {
			b.o.Log.Debug("cluster: users over budget not published", "err", err)
		}
		for _, u := range found {
			over[u.(string)] = true
		}
	}
	return true
}
