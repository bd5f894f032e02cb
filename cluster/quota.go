package cluster

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The cluster-wide per-user allocation quota. Each node keeps, in the hash
// P ualloc:NODE, how many allocations each user holds on it (expiring with
// the node's heartbeats, so a dead node's count goes with it). A new
// allocation asks Acquire, one script run in Redis: the user's count over
// every live node (the node set of the registry) against the quota, and
// this node's count raised when under it. Release lowers it when the
// allocation ends; every ResyncEvery the node rewrites its hash from its
// own table, which repairs what a lost release or answer left behind.

// acquireScript: ARGV prefix, node, user, limit, now (ms), ttl (s).
var acquireScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', ARGV[1] .. 'nodes', ARGV[5], '+inf')
local seen, total = false, 0
for _, id in ipairs(ids) do
  if id == ARGV[2] then seen = true end
  total = total + tonumber(redis.call('HGET', ARGV[1] .. 'ualloc:' .. id, ARGV[3]) or '0')
end
if not seen then
  total = total + tonumber(redis.call('HGET', ARGV[1] .. 'ualloc:' .. ARGV[2], ARGV[3]) or '0')
end
if total >= tonumber(ARGV[4]) then return 0 end
redis.call('HINCRBY', ARGV[1] .. 'ualloc:' .. ARGV[2], ARGV[3], 1)
redis.call('EXPIRE', ARGV[1] .. 'ualloc:' .. ARGV[2], ARGV[6])
return 1
`)

// releaseScript: KEYS the node's hash; ARGV user.
var releaseScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
`)

// QuotaOptions configure a UserQuota.
type QuotaOptions struct {
	Client redis.UniversalClient
	Prefix string
	Node   string
	// Limit is quota.user-allocations.
	Limit int
	// TTL is the registry's entry TTL (default 5s); Timeout bounds one
	// Acquire (default 250ms: past it the node decides alone).
	TTL, Timeout time.Duration
	// ResyncEvery is how often the node rewrites its counts (default 30s).
	ResyncEvery time.Duration
	// Counts returns this node's counted allocations per user, for the
	// resync.
	Counts func() map[string]int
	Log    *slog.Logger
}

// UserQuota asks the cluster about users' allocations.
type UserQuota struct {
	o       QuotaOptions
	hash    string
	release chan string
	now     func() time.Time

	acquired, refused, fallbacks, released, lostReleases atomic.Uint64
}

// NewUserQuota returns the quota; Run keeps this node's counts alive.
func NewUserQuota(o QuotaOptions) *UserQuota {
	if o.TTL <= 0 {
		o.TTL = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.ResyncEvery <= 0 {
		o.ResyncEvery = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &UserQuota{o: o, hash: o.Prefix + "ualloc:" + o.Node, release: make(chan string, 65536), now: time.Now}
}

// Acquire reports whether user may hold one more allocation, and whether
// the cluster now counts it. When Redis does not answer in time it allows
// and counts nothing (this node's own limit holds), and counts the
// fallback.
func (q *UserQuota) Acquire(user string) (ok, counted bool) {
	ctx, cancel := context.WithTimeout(context.Background(), q.o.Timeout)
	defer cancel()
	ttl := strconv.Itoa(int(q.o.TTL / time.Second))
	got, err := acquireScript.Run(ctx, q.o.Client, nil, q.o.Prefix, q.o.Node, user, q.o.Limit, q.now().UnixMilli(), ttl).Int()
	switch {
	case err != nil:
		q.fallbacks.Add(1)
		return true, false
	case got == 1:
		q.acquired.Add(1)
		return true, true
	}
	q.refused.Add(1)
	return false, false
}

// Release takes one of user's allocations off this node's count; it
// never blocks (a release that does not fit the queue is lost, and the
// next resync repairs it).
func (q *UserQuota) Release(user string) {
	select {
	case q.release <- user:
	default:
		q.lostReleases.Add(1)
	}
}

// QuotaStats are the quota's counters.
type QuotaStats struct {
	Acquired, Refused, Fallbacks, Released, LostReleases uint64
}

// Stats returns the counters.
func (q *UserQuota) Stats() QuotaStats {
	return QuotaStats{Acquired: q.acquired.Load(), Refused: q.refused.Load(), Fallbacks: q.fallbacks.Load(), Released: q.released.Load(), LostReleases: q.lostReleases.Load()}
}

// Run applies releases, keeps the hash from expiring while the node
// lives, and resyncs it, until ctx is done; then it deletes the hash (the
// node's allocations end with it).
func (q *UserQuota) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := q.now()
	q.resync(ctx)
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = q.o.Client.Del(dctx, q.hash).Err()
			cancel()
			return
		case user := <-q.release:
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			if err := releaseScript.Run(rctx, q.o.Client, []string{q.hash}, user).Err(); err != nil {
				q.lostReleases.Add(1) // the resync repairs it
			} else {
				q.released.Add(1)
			}
			cancel()
		case <-tick.C:
			if q.now().Sub(last) >= q.o.ResyncEvery {
				q.resync(ctx)
				last = q.now()
			} else {
				rctx, cancel := context.WithTimeout(ctx, time.Second)
				alive, err := q.o.Client.Expire(rctx, q.hash, q.o.TTL).Result()
				cancel()
				if err == nil && !alive {
					// Gone (Redis restarted empty, or the hash lapsed
					// while Redis was cut off): write it again now.
					q.resync(ctx)
					last = q.now()
				}
			}
		}
	}
}

// resync rewrites this node's counts from its own table.
func (q *UserQuota) resync(ctx context.Context) {
	if q.o.Counts == nil {
		return
	}
	counts := q.o.Counts()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := q.o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, q.hash)
		if len(counts) > 0 {
			vals := make([]any, 0, 2*len(counts))
			for u, n := range counts {
				vals = append(vals, u, n)
			}
			p.HSet(ctx, q.hash, vals...)
			p.Expire(ctx, q.hash, q.o.TTL)
		}
		return nil
	})
	if err != nil {
		q.o.Log.Debug("cluster: user counts not resynced", "err", err)
	}
}
