package cluster

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// TestScaleSimulation runs many nodes' cluster parts in one process
// against one redis-server, as serve runs them (registry heartbeats, the
// user quota's Acquire, Release, keep-alive and resync, revocation
// reloads, byte budget rounds, usage records, the admin subscription),
// and measures what Redis does per allocation and per second from its
// own INFO commandstats and CPU counters. By default it is small (5
// nodes × 200 allocations), to keep it working in the suite;
// FERRY_SCALE=50x10000 (nodes × allocations per node) runs the figures
// of docs/scaling.md, FERRY_SCALE_SECONDS the steady phase's length.
func TestScaleSimulation(t *testing.T) {
	nodes, per, steady := 5, 200, 3*time.Second
	if s := os.Getenv("FERRY_SCALE"); s != "" {
		a, b, ok := strings.Cut(s, "x")
		n1, e1 := strconv.Atoi(a)
		n2, e2 := strconv.Atoi(b)
		if !ok || e1 != nil || e2 != nil || n1 < 1 || n2 < 1 {
			t.Fatalf("FERRY_SCALE=%q: want NODESxALLOCATIONS, e.g. 50x10000", s)
		}
		nodes, per = n1, n2
		steady = 10 * time.Second
	}
	if s := os.Getenv("FERRY_SCALE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("FERRY_SCALE_SECONDS=%q", s)
		}
		steady = time.Duration(n) * time.Second
	}
	rs := testutil.StartRedis(t)
	admin := client(t, rs)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	const prefix = "scale:"
	const usersPerNode = 2 // allocations per user: 2 (a call's two legs)
	type simNode struct {
		id    string
		reg   *Registry
		quota *UserQuota
		bud   *Budget
		usage *UsageWriter
		mu    sync.Mutex
		users map[string]int
	}
	sim := make([]*simNode, nodes)
	trips := &tripCounter{}
	for i := range sim {
		n := &simNode{id: fmt.Sprintf("node-%03d", i), users: map[string]int{}}
		c := client(t, rs)
		c.AddHook(trips)
		reg, err := NewRegistry(Options{Client: c, Prefix: prefix, Self: func() Node {
			n.mu.Lock()
			defer n.mu.Unlock()
			return Node{ID: n.id, Region: "r" + strconv.Itoa(i%3), PublicHost: n.id + ".example", Listeners: []string{"udp://" + n.id + ".example:3478"},
				State: StateReady, Load: Load{Allocations: len(n.users) * usersPerNode}}
		}})
		if err != nil {
			t.Fatal(err)
		}
		n.reg = reg
		n.quota = NewUserQuota(QuotaOptions{Client: c, Prefix: prefix, Node: n.id, Limit: 64, Counts: func() map[string]int {
			n.mu.Lock()
			defer n.mu.Unlock()
			out := make(map[string]int, len(n.users))
			for u, k := range n.users {
				out[u] = k
			}
			return out
		}})
		// 10 GB a day each: chunks of 100 MB.
		n.bud = NewBudget(BudgetOptions{Client: c, Prefix: prefix, Limit: 10_000_000_000, Period: 24 * time.Hour})
		if n.usage, err = NewUsageWriter(UsageOptions{Client: c, Prefix: prefix, MaxLen: 1_000_000}); err != nil {
			t.Fatal(err)
		}
		sim[i] = n
	}
	// Phase 0: the registry alone, for the background rate.
	for _, n := range sim {
		wg.Go(func() { n.reg.Run(ctx) })
	}
	testutil.WaitFor(t, 30*time.Second, "every node registered", func() bool { return len(sim[0].reg.Nodes()) == nodes })
	s0 := redisStats(t, admin)
	time.Sleep(2 * time.Second)
	s1, tr1 := redisStats(t, admin), trips.n.Load()
	background := s1.sub(s0).perSecond(2 * time.Second)

	// Phase 1: every node allocates, users spread so that each user's
	// two allocations are on different nodes.
	start := time.Now()
	var refused atomic.Int64
	var awg sync.WaitGroup
	for i, n := range sim {
		awg.Go(func() {
			for j := range per {
				// User k of node i's block has its even allocation
				// on node i and its odd one on node i-1.
				u := "u" + strconv.Itoa(((i+j%2)%nodes)*(per/2)+j/2)
				if ok, _ := n.quota.Acquire(u); !ok {
					refused.Add(1)
					continue
				}
				n.mu.Lock()
				n.users[u]++
				n.mu.Unlock()
			}
		})
	}
	awg.Wait()
	took := time.Since(start)
	s2, tr2 := redisStats(t, admin), trips.n.Load()
	allocs := nodes * per
	if refused.Load() != 0 {
		t.Fatalf("%d allocations refused under a quota of 64", refused.Load())
	}
	alloc := s2.sub(s1).minus(background, took)

	// Phase 2: steady state with every loop running. Each second each
	// node's users relay 1 Mbit/s (one budget round with all of them),
	// and a sixtieth of its allocations get their minute's usage record.
	// In a steady state a user's bytes not yet added in Redis are
	// anywhere from none to a chunk: start them so.
	for _, n := range sim {
		n.bud.window = n.bud.Window(time.Now())
		for u := range n.users {
			n.bud.pending[u] = rand.Int64N(n.bud.o.Chunk)
		}
	}
	steadyCtx, stopSteady := context.WithCancel(ctx)
	var swg sync.WaitGroup
	for _, n := range sim {
		wg.Go(func() { n.quota.Run(ctx) })
		swg.Go(func() { n.usage.Run(steadyCtx) })
		rev := NewRevocations(RevocationOptions{Client: n.reg.o.Client, Prefix: prefix, Node: n.id})
		swg.Go(func() { rev.Run(steadyCtx) })
		adm := NewAdmin(AdminOptions{Client: n.reg.o.Client, Prefix: prefix, Node: n.id, Nodes: n.reg.Nodes})
		swg.Go(func() { adm.Run(steadyCtx) })
		ctx := steadyCtx
		swg.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			sec := 0
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-tick.C:
					n.mu.Lock()
					deltas := make(map[string]int64, len(n.users))
					for u, k := range n.users {
						deltas[u] = 125_000 * int64(k) // 1 Mbit/s each
					}
					users := slices.Sorted(maps.Keys(n.users))
					counts := maps.Clone(n.users)
					n.mu.Unlock()
					n.bud.Update(ctx, deltas, now)
					for k, u := range users {
						if k%60 == sec%60 {
							for range counts[u] {
								n.usage.Add(Record{Node: n.id, Session: "s", ID: uint64(k), User: u, Start: now, End: now, ToPeerBytes: 1})
							}
						}
					}
					sec++
				}
			}
		})
	}
	time.Sleep(time.Second) // resyncs at start
	s3, tr3 := redisStats(t, admin), trips.n.Load()
	time.Sleep(steady)
	s4, tr4 := redisStats(t, admin), trips.n.Load()
	running := s4.sub(s3).perSecond(steady)
	stopSteady()
	swg.Wait()

	// Phase 3: every allocation ends.
	for _, n := range sim {
		n.mu.Lock()
		for u, k := range n.users {
			for range k {
				n.quota.Release(u)
			}
		}
		clear(n.users)
		n.mu.Unlock()
	}
	s5, t5 := redisStats(t, admin), time.Now()
	testutil.WaitFor(t, 120*time.Second, "every release applied", func() bool {
		done := 0
		for _, n := range sim {
			st := n.quota.Stats()
			done += int(st.Released + st.LostReleases)
		}
		return done == allocs
	})
	for _, n := range sim {
		if st := n.quota.Stats(); st.LostReleases != 0 {
			t.Fatalf("%s lost %d releases", n.id, st.LostReleases)
		}
	}
	s6 := redisStats(t, admin)
	release := s6.sub(s5).minus(background, time.Since(t5))

	report := &strings.Builder{}
	fmt.Fprintf(report, "%d nodes × %d allocations (%d users, 2 allocations each), steady phase %v\n", nodes, per, allocs/usersPerNode, steady)
	fmt.Fprintf(report, "background (registry only): %.0f commands/s, Redis CPU %.1f%%\n", background.total(), 100*background.cpu)
	fmt.Fprintf(report, "allocate: %d allocations in %v (%.0f/s): %.2f round trips (%.2f with the registry's) and %.1f commands each in Redis, Redis CPU %.1f µs each\n",
		allocs, took.Round(time.Millisecond), float64(allocs)/took.Seconds(), alloc.scripts()/float64(allocs), float64(tr2-tr1)/float64(allocs),
		alloc.total()/float64(allocs), alloc.cpu/float64(allocs)*1e6)
	fmt.Fprintf(report, "steady: %.0f commands/s and %.0f round trips/s in Redis, Redis CPU %.1f%% of a core, memory %.1f MiB\n",
		running.total(), float64(tr4-tr3)/steady.Seconds(), 100*running.cpu, float64(s4.memory)/(1<<20))
	fmt.Fprintf(report, "  by command: %s\n", running.top(8))
	fmt.Fprintf(report, "release: %.2f round trips and %.1f commands each in Redis, Redis CPU %.1f µs each\n",
		release.scripts()/float64(allocs), release.total()/float64(allocs), release.cpu/float64(allocs)*1e6)
	t.Log("\n" + report.String())
	if out := os.Getenv("FERRY_SCALE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stats are Redis's own counters: calls per command, CPU seconds, memory.
type stats struct {
	calls  map[string]float64
	cpu    float64
	memory int64
}

func redisStats(t *testing.T, c *redis.Client) stats {
	t.Helper()
	s := stats{calls: map[string]float64{}}
	info, err := c.Info(context.Background(), "commandstats", "cpu", "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "cmdstat_"):
			name, rest, _ := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
			for _, kv := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(kv, "calls="); ok {
					n, _ := strconv.ParseFloat(v, 64)
					s.calls[name] = n
				}
			}
		case strings.HasPrefix(line, "used_cpu_sys:"), strings.HasPrefix(line, "used_cpu_user:"):
			_, v, _ := strings.Cut(line, ":")
			f, _ := strconv.ParseFloat(v, 64)
			s.cpu += f
		case strings.HasPrefix(line, "used_memory:"):
			s.memory, _ = strconv.ParseInt(strings.TrimPrefix(line, "used_memory:"), 10, 64)
		}
	}
	return s
}

// sub is s - o.
func (s stats) sub(o stats) stats {
	d := stats{calls: map[string]float64{}, cpu: s.cpu - o.cpu, memory: s.memory}
	for k, v := range s.calls {
		if v -= o.calls[k]; v != 0 {
			d.calls[k] = v
		}
	}
	// The INFO calls of the measurement itself.
	d.calls["info"]--
	if d.calls["info"] <= 0 {
		delete(d.calls, "info")
	}
	return d
}

// perSecond divides s by d.
func (s stats) perSecond(d time.Duration) stats {
	r := stats{calls: map[string]float64{}, cpu: s.cpu / d.Seconds(), memory: s.memory}
	for k, v := range s.calls {
		r.calls[k] = v / d.Seconds()
	}
	return r
}

// minus takes a background rate over d off s.
func (s stats) minus(rate stats, d time.Duration) stats {
	r := stats{calls: map[string]float64{}, cpu: max(0, s.cpu-rate.cpu*d.Seconds()), memory: s.memory}
	for k, v := range s.calls {
		r.calls[k] = max(0, v-rate.calls[k]*d.Seconds())
	}
	return r
}

// scripts counts script runs (EVALSHA, or EVAL the first time).
func (s stats) scripts() float64 { return s.calls["evalsha"] + s.calls["eval"] }

func (s stats) total() float64 {
	n := 0.0
	for _, v := range s.calls {
		n += v
	}
	return n
}

// top names the n commands called most.
func (s stats) top(n int) string {
	type kv struct {
		k string
		v float64
	}
	var all []kv
	for k, v := range s.calls {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int {
		switch {
		case a.v > b.v:
			return -1
		case a.v < b.v:
			return 1
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for i, e := range all {
		if i == n {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f/s", strings.ToUpper(e.k), e.v))
	}
	return strings.Join(parts, ", ")
}

// tripCounter counts the round trips clients make to Redis: single
// commands and pipelines (a subscription's pushed messages are not
// asked for, so not counted).
type tripCounter struct{ n atomic.Int64 }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}
