package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// States of a node.
const (
	StateReady    = "ready"
	StateDraining = "draining"
)

// Node is one node's registry entry.
type Node struct {
	ID         string `json:"id"`
	Region     string `json:"region,omitempty"`
	PublicHost string `json:"public_host"`
	// Listeners are the node's client-facing listeners as URLs
	// (udp://203.0.113.7:3478, tls://...), with PublicHost as their host.
	Listeners []string `json:"listeners"`
	// Addrs are the node's public IP addresses, at most one per family:
	// where other nodes redirect clients (ALTERNATE-SERVER takes an
	// address, not a name).
	Addrs   []string `json:"addrs,omitempty"`
	State   string   `json:"state"`
	Load    Load     `json:"load"`
	Version string   `json:"version,omitempty"`
	// Updated is when the node wrote the entry, by its clock.
	Updated time.Time `json:"updated"`
	// expires is when the entry lapses, by the reader's clock.
	expires time.Time
}

// Load is what a node carries.
type Load struct {
	Allocations      int     `json:"allocations"`
	PacketsPerSecond float64 `json:"packets_per_second"`
	BitsPerSecond    float64 `json:"bits_per_second"`
	// CPU is the process's CPU time per second: 1.0 is one core busy.
	CPU float64 `json:"cpu"`
}

// Options configure a Registry.
type Options struct {
	// Client is the Redis client (the caller dials and closes it).
	Client redis.UniversalClient
	// Prefix starts every key.
	Prefix string
	// Self returns this node's entry as it is now; the registry stamps
	// Updated. Its ID must not change.
	Self func() Node
	// Interval is the time between heartbeats (default 1s); TTL how long
	// an entry outlives its last heartbeat (default 5s, at least two
	// intervals).
	Interval, TTL time.Duration
	// Log gets a line when Redis goes away and when it comes back; nil
	// discards.
	Log *slog.Logger
	// OnRound, if set, runs after every round with Redis, failed or not,
	// on Run's goroutine: Nodes has changed, or entries may have lapsed.
	OnRound func()
}

// Stats are the registry's counters.
type Stats struct {
	Heartbeats  uint64 // entries written
	Malformed   uint64 // entries of other nodes skipped as malformed
	RedisErrors uint64 // failed rounds with Redis
}

// Registry keeps this node's entry in Redis and reads everybody's.
type Registry struct {
	o    Options
	id   string
	keys struct{ set, self string }
	now  func() time.Time

	nodes atomic.Pointer[[]Node] // the last read, ordered by ID
	up    atomic.Bool
	kick  chan struct{}

	heartbeats, malformed, redisErrors atomic.Uint64
	downSince                          time.Time // Run's goroutine only
}

// NewRegistry checks o and returns a registry that does nothing until Run.
func NewRegistry(o Options) (*Registry, error) {
	if o.Client == nil {
		return nil, errors.New("cluster: no Redis client")
	}
	if o.Self == nil {
		return nil, errors.New("cluster: no Self")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Second
	}
	if o.TTL < 2*o.Interval {
		return nil, fmt.Errorf("cluster: TTL %v is shorter than two heartbeat intervals (%v)", o.TTL, o.Interval)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	self := o.Self()
	if self.ID == "" {
		return nil, errors.New("cluster: this node has no ID")
	}
	r := &Registry{o: o, id: self.ID, now: time.Now, kick: make(chan struct{}, 1)}
	r.keys.set = o.Prefix + "nodes"
	r.keys.self = r.nodeKey(self.ID)
	empty := []Node{}
	r.nodes.Store(&empty)
	return r, nil
}

func (r *Registry) nodeKey(id string) string { return r.o.Prefix + "node:" + id }

// Run heartbeats and reads every Interval until ctx is done, then takes
// this node's entry out (bounded by one second) so that placement stops
// naming it at once.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.o.Interval)
	defer t.Stop()
	r.round(ctx)
	for {
		select {
		case <-ctx.Done():
			r.leave()
			return
		case <-t.C:
		case <-r.kick:
		}
		r.round(ctx)
	}
}

// Beat asks for a heartbeat now (the node's state changed).
func (r *Registry) Beat() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// round writes this node's entry and reads everybody's.
func (r *Registry) round(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Interval)
	defer cancel()
	if r.o.OnRound != nil {
		defer r.o.OnRound()
	}
	err := r.heartbeat(ctx)
	if err == nil {
		err = r.read(ctx)
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // stopping
		}
		r.redisErrors.Add(1)
		if r.up.Swap(false) || r.downSince.IsZero() {
			r.downSince = r.now()
			r.o.Log.Warn("cluster: Redis unreachable; serving on this node's own limits until it returns", "err", err)
		}
		return
	}
	if !r.up.Swap(true) && !r.downSince.IsZero() {
		r.o.Log.Info("cluster: Redis is back", "after", r.now().Sub(r.downSince).Round(time.Millisecond))
		r.downSince = time.Time{}
	}
}

// heartbeat writes this node's entry.
func (r *Registry) heartbeat(ctx context.Context) error {
	n := r.o.Self()
	if n.ID != r.id {
		return fmt.Errorf("cluster: node ID changed from %q to %q", r.id, n.ID)
	}
	now := r.now()
	n.Updated = now.UTC()
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	expires := now.Add(r.o.TTL)
	_, err = r.o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.keys.self, b, r.o.TTL)
		p.ZAdd(ctx, r.keys.set, redis.Z{Score: float64(expires.UnixMilli()), Member: r.id})
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: heartbeat to Redis: %w", err)
	}
	r.heartbeats.Add(1)
	return nil
}

// read fetches the live entries and replaces the snapshot.
func (r *Registry) read(ctx context.Context) error {
	now := r.now()
	ms := strconv.FormatInt(now.UnixMilli(), 10)
	var ids *redis.ZSliceCmd
	_, err := r.o.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, r.keys.set, "-inf", "("+ms)
		ids = p.ZRangeByScoreWithScores(ctx, r.keys.set, &redis.ZRangeBy{Min: ms, Max: "+inf"})
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: reading the registry: %w", err)
	}
	zs := ids.Val()
	if len(zs) == 0 {
		empty := []Node{}
		r.nodes.Store(&empty)
		return nil
	}
	keys := make([]string, 0, len(zs))
	members := make([]string, 0, len(zs))
	for _, z := range zs {
		id, ok := z.Member.(string)
		if !ok {
			r.malformed.Add(1)
			continue
		}
		keys = append(keys, r.nodeKey(id))
		members = append(members, id)
	}
	vals, err := r.o.Client.MGet(ctx, keys...).Result()
	if err != nil {
		return fmt.Errorf("cluster: reading the registry: %w", err)
	}
	nodes := make([]Node, 0, len(vals))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired between the two reads
		}
		var n Node
		if err := json.Unmarshal([]byte(s), &n); err != nil || n.ID != members[i] || (n.State != StateReady && n.State != StateDraining) {
			r.malformed.Add(1)
			continue
		}
		n.expires = time.UnixMilli(int64(zs[i].Score))
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b Node) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	r.nodes.Store(&nodes)
	return nil
}

// leave deletes this node's entry.
func (r *Registry) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := r.o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.keys.self)
		p.ZRem(ctx, r.keys.set, r.id)
		return nil
	})
	if err != nil {
		r.o.Log.Warn("cluster: could not take this node out of the registry; it drops out when its entry expires", "err", err, "ttl", r.o.TTL)
	}
}

// Nodes returns the entries read last that have not expired since, this
// node's included, ordered by ID. While Redis is away they lapse one by
// one: placement then falls back to this node alone.
func (r *Registry) Nodes() []Node {
	now := r.now()
	all := *r.nodes.Load()
	out := make([]Node, 0, len(all))
	for _, n := range all {
		if now.Before(n.expires) {
			out = append(out, n)
		}
	}
	return out
}

// ID is this node's ID.
func (r *Registry) ID() string { return r.id }

// Up reports whether the last round with Redis succeeded.
func (r *Registry) Up() bool { return r.up.Load() }

// Stats returns the registry's counters.
func (r *Registry) Stats() Stats {
	return Stats{Heartbeats: r.heartbeats.Load(), Malformed: r.malformed.Load(), RedisErrors: r.redisErrors.Load()}
}
