package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// TestBudgetAcrossNodes: a user's bytes on two nodes add up against one
// budget; both nodes stop it in the round after the total passes, also a
// node where the user was idle; a new period starts from zero.
func TestBudgetAcrossNodes(t *testing.T) {
	rs := testutil.StartRedis(t)
	ctx := context.Background()
	o := BudgetOptions{Prefix: "t:", Limit: 1_000_000, Period: time.Hour, Chunk: 1}
	o.Client = client(t, rs)
	a := NewBudget(o)
	o.Client = client(t, rs)
	b := NewBudget(o)
	c := NewBudget(o) // a third node the user never uses
	now := time.Date(2026, 11, 30, 10, 15, 0, 0, time.UTC)

	steps := []struct {
		node     *Budget
		deltas   map[string]int64
		wantOver []string
	}{
		{a, map[string]int64{"alice": 400_000, "bob": 10}, nil},
		{b, map[string]int64{"alice": 400_000}, nil},
		{c, nil, nil},
		{a, map[string]int64{"alice": 199_999}, nil}, // 999,999 in all
		{b, map[string]int64{"alice": 1, "bob": 5}, []string{"alice"}},
		{a, nil, []string{"alice"}},
		{c, nil, []string{"alice"}},
	}
	for i, s := range steps {
		over, _ := s.node.Update(ctx, s.deltas, now)
		if len(over) != len(s.wantOver) {
			t.Fatalf("step %d: over %v, want %v", i, over, s.wantOver)
		}
		for _, u := range s.wantOver {
			if !over[u] {
				t.Fatalf("step %d: over %v, want %v", i, over, s.wantOver)
			}
		}
	}
	// The next period: nobody is over, and alice's bytes start again.
	next := now.Add(time.Hour)
	for _, n := range []*Budget{a, b, c} {
		if over, changed := n.Update(ctx, map[string]int64{"alice": 300_000}, next); len(over) != 0 || !changed {
			t.Fatalf("next period: over %v (changed %v)", over, changed)
		}
	}
	if over, _ := a.Update(ctx, map[string]int64{"alice": 100_000}, next); len(over) != 1 || !over["alice"] {
		t.Fatalf("after 1,000,000 bytes in the next period: over %v", over)
	}
	if st := a.Stats(); st.Updates != 5 || st.Fallbacks != 0 || st.Overs != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBudgetWithoutRedis: Redis away, a node decides from its own bytes
// and keeps those Redis has not counted; when Redis is back they count.
func TestBudgetWithoutRedis(t *testing.T) {
	rs := testutil.StartDurableRedis(t)
	ctx := context.Background()
	o := BudgetOptions{Prefix: "t:", Limit: 1_000_000, Period: 24 * time.Hour, Timeout: 200 * time.Millisecond}
	o.Client = client(t, rs)
	a := NewBudget(o)
	o.Client = client(t, rs)
	b := NewBudget(o)
	now := time.Date(2026, 11, 30, 10, 15, 0, 0, time.UTC)
	if over, _ := a.Update(ctx, map[string]int64{"alice": 600_000}, now); len(over) != 0 {
		t.Fatalf("over %v", over)
	}
	rs.Kill(t)
	// b alone: its own 600,000 are under the budget, 1,000,000 are not.
	if over, _ := b.Update(ctx, map[string]int64{"alice": 600_000}, now); len(over) != 0 {
		t.Fatalf("b without Redis, 600,000 bytes of its own: over %v", over)
	}
	if over, _ := b.Update(ctx, map[string]int64{"alice": 400_000}, now); !over["alice"] {
		t.Fatalf("b without Redis, 1,000,000 bytes of its own: over %v", over)
	}
	if st := b.Stats(); st.Fallbacks != 2 {
		t.Fatalf("fallbacks %d, want 2", st.Fallbacks)
	}
	rs.Start(t)
	// Back: a learns alice is over from b's million counted late.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.Update(ctx, nil, now)
		if over, _ := a.Update(ctx, nil, now); over["alice"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a never learnt alice is over; b %+v, a %+v", b.Stats(), a.Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBudgetLocal: without a cluster the node's own bytes decide.
func TestBudgetLocal(t *testing.T) {
	bud := NewBudget(BudgetOptions{Limit: 1_000_000, Period: time.Minute})
	now := time.Date(2026, 11, 30, 10, 15, 0, 0, time.UTC)
	if over, changed := bud.Update(context.Background(), map[string]int64{"alice": 999_999}, now); len(over) != 0 || changed {
		t.Fatalf("over %v, changed %v", over, changed)
	}
	if over, changed := bud.Update(context.Background(), map[string]int64{"alice": 1}, now.Add(59*time.Second)); !over["alice"] || !changed {
		t.Fatalf("over %v, changed %v", over, changed)
	}
	if over, changed := bud.Update(context.Background(), nil, now.Add(time.Minute)); len(over) != 0 || !changed {
		t.Fatalf("a new minute: over %v, changed %v", over, changed)
	}
	if st := bud.Stats(); st.Local != 3 || st.Overs != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBudgetChunks: a node adds a user's bytes in Redis a chunk at a
// time, so Redis sees few additions, and the cluster stops the user once
// the chunks added pass the budget, or once a node's own count alone
// would.
func TestBudgetChunks(t *testing.T) {
	rs := testutil.StartRedis(t)
	ctx := context.Background()
	o := BudgetOptions{Prefix: "t:", Limit: 10_000_000, Period: time.Hour, Chunk: 1_000_000}
	o.Client = client(t, rs)
	a := NewBudget(o)
	o.Client = client(t, rs)
	b := NewBudget(o)
	now := time.Date(2026, 11, 30, 10, 15, 0, 0, time.UTC)
	c := client(t, rs)
	count := func() int64 {
		v, _ := c.HGet(ctx, "t:ubytes:3600:"+strconv.FormatInt(a.Window(now), 10), "alice").Int64()
		return v
	}
	// 100 rounds of 40,000 bytes on each node: 8,000,000 in all, added
	// in Redis 1,000,000 at a time.
	for range 100 {
		a.Update(ctx, map[string]int64{"alice": 40_000}, now)
		b.Update(ctx, map[string]int64{"alice": 40_000}, now)
	}
	if got := count(); got != 8_000_000 {
		t.Fatalf("Redis counts %d bytes of alice's 8,000,000", got)
	}
	// 1,500,000 more on a: more than a chunk, all added; 9,500,000 in
	// Redis, under the budget.
	if over, _ := a.Update(ctx, map[string]int64{"alice": 1_500_000}, now); len(over) != 0 || count() != 9_500_000 {
		t.Fatalf("over %v with %d counted", over, count())
	}
	// b's next 999,999: not a chunk, and with the count b last saw
	// (8,000,000) not the budget either: they wait, though the truth is
	// past it (the lag, under a chunk per node).
	if over, _ := b.Update(ctx, map[string]int64{"alice": 999_999}, now); len(over) != 0 || count() != 9_500_000 {
		t.Fatalf("over %v with %d counted", over, count())
	}
	// One more byte on b makes its chunk: 10,500,000 counted, over.
	if over, _ := b.Update(ctx, map[string]int64{"alice": 1}, now); !over["alice"] || count() != 10_500_000 {
		t.Fatalf("over %v with %d counted", over, count())
	}
	if over, _ := a.Update(ctx, nil, now); !over["alice"] {
		t.Fatalf("a did not learn alice is over: %v", over)
	}
}
