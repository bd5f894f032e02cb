package cli

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryrtc/ferry/cluster"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/dataplane"
	"github.com/ferryrtc/ferry/engine"
)

// byteBudget enforces quota.user-bytes: once a second it works out what
// each user relayed since the last round (the live allocations' counters,
// and the final counts of those that ended meanwhile), adds it to the
// budget (this node's, or the cluster's in Redis), and puts the users
// over budget in force in the engine, which closes their allocations and
// refuses new ones.
type byteBudget struct {
	b     *cluster.Budget
	ended chan engine.AllocationInfo
	// seen is what each live allocation had relayed at the last round;
	// missed how many rounds it has been absent from the list (its final
	// counts may still be on their way through ended).
	seen   map[uint64]uint64
	missed map[uint64]int

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// newByteBudget returns the budget of cfg, or nil when quota.user-bytes
// is 0. client is the cluster's Redis (nil: this node alone).
func newByteBudget(cfg config.Config, client *redis.Client, log *slog.Logger) *byteBudget {
	if cfg.Quota.UserBytes <= 0 {
		return nil
	}
	o := cluster.BudgetOptions{Prefix: cfg.Cluster.KeyPrefix, Limit: int64(cfg.Quota.UserBytes), Period: cfg.Quota.UserBytesPeriod, Log: log}
	if client != nil {
		o.Client = client
	}
	return &byteBudget{
		b:      cluster.NewBudget(o),
		ended:  make(chan engine.AllocationInfo, 65536),
		seen:   map[uint64]uint64{},
		missed: map[uint64]int{},
	}
}

// allocationEnded is part of dataplane.Options.Usage: it must not block.
// An allocation whose final counts do not fit the queue is counted as of
// the last round.
func (bb *byteBudget) allocationEnded(info engine.AllocationInfo) {
	if bb == nil {
		return
	}
	select {
	case bb.ended <- info:
	default:
	}
}

// start runs the rounds until stop.
func (bb *byteBudget) start(srv *dataplane.Server, log *slog.Logger) {
	if bb == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	bb.cancel = cancel
	bb.done.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				over, changed := bb.b.Update(ctx, bb.deltas(srv.List()), now)
				if changed {
					closed := srv.SetOverBudget(over)
					log.Info("byte budgets: users over budget for this period", "users", len(over), "closed_allocations", closed)
				}
			}
		}
	})
}

// deltas returns the bytes each user relayed since the last round: the
// final counts of the allocations that ended, then the live ones' (list).
func (bb *byteBudget) deltas(list []engine.AllocationInfo) map[string]int64 {
	d := map[string]int64{}
	add := func(info engine.AllocationInfo) {
		n := info.ToPeerBytes + info.FromPeerBytes
		if prev := bb.seen[info.ID]; n > prev {
			d[info.User] += int64(n - prev)
		}
	}
drain:
	for {
		select {
		case info := <-bb.ended:
			add(info)
			delete(bb.seen, info.ID)
			delete(bb.missed, info.ID)
		default:
			break drain
		}
	}
	live := make(map[uint64]bool, len(list))
	for _, info := range list {
		add(info)
		bb.seen[info.ID] = info.ToPeerBytes + info.FromPeerBytes
		live[info.ID] = true
		delete(bb.missed, info.ID)
	}
	for id := range bb.seen {
		if !live[id] {
			// Ended: its final counts come through ended, usually
			// in the same round; forget it after a few.
			if bb.missed[id]++; bb.missed[id] > 3 {
				delete(bb.seen, id)
				delete(bb.missed, id)
			}
		}
	}
	return d
}

// stop ends the rounds.
func (bb *byteBudget) stop() {
	if bb == nil || bb.cancel == nil {
		return
	}
	bb.cancel()
	bb.done.Wait()
}

// Stats is metrics.ByteBudget.
func (bb *byteBudget) Stats() cluster.BudgetStats { return bb.b.Stats() }
