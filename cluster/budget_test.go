package cluster

import (
	"context"
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
	o := BudgetOptions{Prefix: "t:", Limit: 1_000_000, Period: time.Hour}
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
