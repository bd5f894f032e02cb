package cluster

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// fakeTable is one node's allocations.
type fakeTable struct {
	mu     sync.Mutex
	allocs []engine.AllocationInfo
}

func (f *fakeTable) List() []engine.AllocationInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.allocs)
}

func (f *fakeTable) CloseUser(user string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.allocs)
	f.allocs = slices.DeleteFunc(f.allocs, func(a engine.AllocationInfo) bool { return a.User == user })
	return n - len(f.allocs)
}

// TestAdminAcrossNodes: a list and a close asked on one node run on
// every node; a node in the registry that does not answer is named; a
// malformed request is skipped and counted.
func TestAdminAcrossNodes(t *testing.T) {
	rs := testutil.StartRedis(t)
	ids := []string{"a", "b", "c"}
	nodes := func() []Node {
		var out []Node
		for _, id := range append(slices.Clone(ids), "gone") {
			out = append(out, Node{ID: id})
		}
		return out
	}
	tables := map[string]*fakeTable{}
	admins := map[string]*Admin{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i, id := range ids {
		tab := &fakeTable{}
		for j := range i + 1 {
			user := "alice"
			if j == 1 {
				user = "bob"
			}
			tab.allocs = append(tab.allocs, engine.AllocationInfo{ID: uint64(j), User: user, Relay: "127.0.0.1:4000" + string(rune('0'+j))})
		}
		tables[id] = tab
		a := NewAdmin(AdminOptions{Client: client(t, rs), Prefix: "t:", Node: id, List: tab.List, CloseUser: tab.CloseUser, Nodes: nodes, Timeout: time.Second})
		admins[id] = a
		wg.Go(func() { a.Run(ctx) })
	}
	time.Sleep(200 * time.Millisecond) // subscribed
	if err := client(t, rs).Publish(ctx, "t:admin", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ans, err := admins["b"].List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("answered in %v without waiting for the node that is gone", took)
	}
	if !slices.Equal(ans.Missing, []string{"gone"}) || len(ans.Nodes) != 3 {
		t.Fatalf("answer %+v", ans)
	}
	for i, n := range ans.Nodes {
		if n.Node != ids[i] || len(n.Allocations) != i+1 {
			t.Fatalf("node %d answered %+v", i, n)
		}
	}
	ans, err = admins["c"].CloseUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	closed := 0
	for _, n := range ans.Nodes {
		closed += n.Closed
	}
	if closed != 4 || len(ans.Nodes) != 3 {
		t.Fatalf("closed %d (%+v), want alice's 4", closed, ans)
	}
	for id, tab := range tables {
		for _, a := range tab.List() {
			if a.User == "alice" {
				t.Fatalf("node %s still has %+v", id, a)
			}
		}
	}
	testutil.WaitFor(t, 2*time.Second, "the malformed request counted on every node", func() bool {
		for _, a := range admins {
			if a.Malformed() != 1 {
				return false
			}
		}
		return true
	})
}
