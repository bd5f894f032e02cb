package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryrtc/ferry/cluster"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/dataplane"
	"github.com/ferryrtc/ferry/engine"
)

// usageRecords writes this node's usage records: the engine reports each
// allocation that ends (dataplane.Options.Usage, bound before the writer
// exists), and a ticker records the live ones every usage.interval.
type usageRecords struct {
	node, session string
	w             atomic.Pointer[cluster.UsageWriter]
	cancel        context.CancelFunc
	done          sync.WaitGroup
	closeClient   func()
}

// newUsageRecords names this node's records; nothing is written until
// start, and never when no sink is configured.
func newUsageRecords(cfg config.Config) *usageRecords {
	node := cfg.Cluster.NodeID
	if node == "" {
		node, _ = os.Hostname()
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &usageRecords{node: node, session: time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)}
}

// record turns an allocation's description into a usage record.
func (u *usageRecords) record(info engine.AllocationInfo, now time.Time) cluster.Record {
	r := cluster.Record{
		Node: u.node, Session: u.session, ID: info.ID,
		User: info.User, Username: info.Username, Client: info.Client, Transport: info.Transport,
		Relay: info.Relay, RelayTransport: info.RelayTransport, Start: info.Created.UTC(), End: now.UTC(),
		ToPeerPackets: info.ToPeerPackets, ToPeerBytes: info.ToPeerBytes,
		FromPeerPackets: info.FromPeerPackets, FromPeerBytes: info.FromPeerBytes,
	}
	if !info.Ended.IsZero() {
		r.End, r.Final, r.EndReason = info.Ended.UTC(), true, info.EndReason
	}
	return r
}

// ended is dataplane.Options.Usage: it must not block.
func (u *usageRecords) ended(info engine.AllocationInfo) {
	if w := u.w.Load(); w != nil {
		w.Add(u.record(info, time.Now()))
	}
}

// start opens the sinks of cfg (the cluster's Redis on a client of its
// own, the file) and begins writing; without either it does nothing.
func (u *usageRecords) start(cfg config.Config, srv *dataplane.Server, log *slog.Logger) error {
	o := cluster.UsageOptions{Prefix: cfg.Cluster.KeyPrefix, MaxLen: int64(cfg.Usage.StreamMaxLen), File: cfg.Usage.File, Log: log}
	if cfg.Cluster.Enabled() {
		c, err := cluster.Dial(cfg.Cluster.Redis)
		if err != nil {
			return err
		}
		o.Client = c
		u.closeClient = func() { _ = c.Close() }
	}
	if o.Client == nil && o.File == "" {
		return nil
	}
	w, err := cluster.NewUsageWriter(o)
	if err != nil {
		if u.closeClient != nil {
			u.closeClient()
		}
		return err
	}
	u.w.Store(w)
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	u.done.Go(func() { w.Run(ctx) })
	u.done.Go(func() {
		t := time.NewTicker(cfg.Usage.Interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				for _, info := range srv.List() {
					w.Add(u.record(info, now))
				}
			}
		}
	})
	log.Info("usage records on", "node", u.node, "session", u.session, "redis", o.Client != nil, "file", o.File)
	return nil
}

// stop writes what is left (the records of allocations closed at
// shutdown included) and closes the sinks.
func (u *usageRecords) stop() {
	if u.cancel == nil {
		return
	}
	u.cancel()
	u.done.Wait()
	if u.closeClient != nil {
		u.closeClient()
	}
}

// withUsage is the TURN server whose usage records are flushed after it
// closes (the allocations it ends then are recorded too), and whose byte
// budget rounds end then.
type withUsage struct {
	turnServer
	u      *usageRecords
	budget *byteBudget
}

func (w withUsage) Close() error {
	err := w.turnServer.Close()
	w.budget.stop()
	w.u.stop()
	return err
}
