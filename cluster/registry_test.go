package cluster

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryrtc/ferry/internal/testutil"
)

const (
	interval = 100 * time.Millisecond
	ttl      = 500 * time.Millisecond
)

func TestMain(m *testing.M) {
	RouteRedisLogs(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func client(t *testing.T, r *testutil.Redis) *redis.Client {
	t.Helper()
	c, err := Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// node is a registry under test with a load the test sets.
type node struct {
	*Registry
	state  atomic.Value // string
	allocs atomic.Int64
	stop   func()
}

func startNode(t *testing.T, c redis.UniversalClient, id, prefix string) *node {
	t.Helper()
	n := &node{}
	n.state.Store(StateReady)
	reg, err := NewRegistry(Options{
		Client: c, Prefix: prefix, Interval: interval, TTL: ttl, Log: testutil.Logger(t),
		Self: func() Node {
			return Node{ID: id, Region: "eu", PublicHost: id + ".example.com", State: n.state.Load().(string),
				Listeners: []string{"udp://" + id + ".example.com:3478"},
				Load:      Load{Allocations: int(n.allocs.Load())}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Registry = reg
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { reg.Run(ctx) })
	n.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(n.stop)
	return n
}

// ids lists the IDs a registry sees, and their states.
func ids(r *Registry) map[string]string {
	out := map[string]string{}
	for _, n := range r.Nodes() {
		out[n.ID] = n.State
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, what, cond)
}

func TestRegistrySeesEveryNode(t *testing.T) {
	rs := testutil.StartRedis(t)
	c := client(t, rs)
	a := startNode(t, c, "a", "t1:")
	b := startNode(t, c, "b", "t1:")
	other := startNode(t, c, "x", "t2:") // another cluster on the same Redis
	waitFor(t, "both nodes to see both", func() bool {
		return len(ids(a.Registry)) == 2 && len(ids(b.Registry)) == 2
	})
	if _, ok := ids(a.Registry)["x"]; ok {
		t.Fatal("a node of another prefix is listed")
	}
	if got := ids(other.Registry); len(got) != 1 {
		t.Fatalf("the other cluster sees %v", got)
	}
	// State and load travel.
	b.allocs.Store(42)
	b.state.Store(StateDraining)
	b.Beat()
	waitFor(t, "a to see b draining with its load", func() bool {
		for _, n := range a.Nodes() {
			if n.ID == "b" {
				return n.State == StateDraining && n.Load.Allocations == 42 && n.PublicHost == "b.example.com" && len(n.Listeners) == 1
			}
		}
		return false
	})
	if !a.Up() || a.Stats().Heartbeats == 0 {
		t.Fatalf("up %v, stats %+v", a.Up(), a.Stats())
	}
	// A node that stops takes itself out at once.
	b.stop()
	waitFor(t, "b to leave", func() bool { _, ok := ids(a.Registry)["b"]; return !ok })
}

func TestSilentNodeDropsOut(t *testing.T) {
	rs := testutil.StartRedis(t)
	c := client(t, rs)
	a := startNode(t, c, "a", "t:")
	// A node that crashed: its last heartbeat, then nothing.
	ctx := context.Background()
	entry := `{"id":"ghost","public_host":"ghost.example.com","listeners":[],"state":"ready","load":{},"updated":"2026-01-01T00:00:00Z"}`
	c.Set(ctx, "t:node:ghost", entry, ttl)
	c.ZAdd(ctx, "t:nodes", redis.Z{Score: float64(time.Now().Add(ttl).UnixMilli()), Member: "ghost"})
	waitFor(t, "the ghost to be listed", func() bool { _, ok := ids(a.Registry)["ghost"]; return ok })
	start := time.Now()
	waitFor(t, "the ghost to drop out", func() bool { _, ok := ids(a.Registry)["ghost"]; return !ok })
	if d := time.Since(start); d > ttl+3*interval {
		t.Errorf("the ghost stayed %v after its last heartbeat, TTL %v", d, ttl)
	}
	// The next round sweeps it from the node set too.
	waitFor(t, "the ghost to leave the node set", func() bool { n, _ := c.ZCard(ctx, "t:nodes").Result(); return n == 1 })
}

func TestMalformedEntriesSkipped(t *testing.T) {
	rs := testutil.StartRedis(t)
	c := client(t, rs)
	a := startNode(t, c, "a", "t:")
	ctx := context.Background()
	exp := float64(time.Now().Add(time.Hour).UnixMilli())
	for id, v := range map[string]string{
		"junk":     "not json {",
		"nameless": `{"public_host":"h","state":"ready"}`,
		"liar":     `{"id":"someone-else","public_host":"h","state":"ready"}`,
		"odd":      `{"id":"odd","public_host":"h","state":"on fire"}`,
	} {
		c.Set(ctx, "t:node:"+id, v, time.Hour)
		c.ZAdd(ctx, "t:nodes", redis.Z{Score: exp, Member: id})
	}
	waitFor(t, "the malformed entries to be counted", func() bool { return a.Stats().Malformed >= 4 })
	if got := ids(a.Registry); len(got) != 1 || got["a"] != StateReady {
		t.Fatalf("listed %v, want only a", got)
	}
}

func TestRedisLossAndReturn(t *testing.T) {
	rs := testutil.StartRedis(t)
	c := client(t, rs)
	a := startNode(t, c, "a", "t:")
	b := startNode(t, c, "b", "t:")
	waitFor(t, "both listed", func() bool { return len(ids(a.Registry)) == 2 })
	rs.Kill(t)
	waitFor(t, "Redis reported down", func() bool { return !a.Up() && a.Stats().RedisErrors > 0 })
	// Entries lapse by their own expiry: placement falls back to the node
	// itself.
	waitFor(t, "the entries to lapse", func() bool { return len(a.Nodes()) == 0 })
	rs.Start(t)
	waitFor(t, "Redis back and both listed again", func() bool { return a.Up() && len(ids(a.Registry)) == 2 && len(ids(b.Registry)) == 2 })
}

func TestOptionsChecked(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	self := func() Node { return Node{ID: "a", State: StateReady} }
	for name, o := range map[string]Options{
		"no client":     {Self: self},
		"no self":       {Client: c},
		"no id":         {Client: c, Self: func() Node { return Node{} }},
		"ttl too short": {Client: c, Self: self, Interval: time.Second, TTL: time.Second},
	} {
		if _, err := NewRegistry(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
