package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// revocationNode is a store whose changes the test watches.
type revocationNode struct {
	*Revocations
	last atomic.Pointer[[]Revocation]
}

func startRevocations(t *testing.T, o RevocationOptions) *revocationNode {
	t.Helper()
	n := &revocationNode{}
	o.Interval = interval
	o.OnChange = func(list []Revocation) { n.last.Store(&list) }
	n.Revocations = NewRevocations(o)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return n
}

// has reports whether the last change handed kind:name to OnChange.
func (n *revocationNode) has(kind, name string) bool {
	l := n.last.Load()
	if l == nil {
		return false
	}
	for _, r := range *l {
		if r.Kind == kind && r.Name == name {
			return true
		}
	}
	return false
}

func TestRevocationsAcrossNodes(t *testing.T) {
	rs := testutil.StartRedis(t)
	c := client(t, rs)
	a := startRevocations(t, RevocationOptions{Client: c, Prefix: "t:", Node: "a"})
	b := startRevocations(t, RevocationOptions{Client: client(t, rs), Prefix: "t:", Node: "b"})
	ctx := context.Background()
	start := time.Now()
	rev, err := a.Revoke(ctx, Revocation{Kind: RevokeUser, Name: "mallory", Until: time.Now().Add(time.Hour), Reason: "abuse"})
	if err != nil {
		t.Fatal(err)
	}
	if rev.Node != "a" || rev.At.IsZero() {
		t.Fatalf("recorded %+v", rev)
	}
	if !a.has(RevokeUser, "mallory") {
		t.Fatal("the recording node did not apply it at once")
	}
	waitFor(t, "b to learn of it", func() bool { return b.has(RevokeUser, "mallory") })
	if d := time.Since(start); d > time.Second {
		t.Errorf("b learnt of the revocation after %v", d)
	}
	// A later node finds the stored list.
	late := startRevocations(t, RevocationOptions{Client: client(t, rs), Prefix: "t:", Node: "late"})
	waitFor(t, "a node started later to find it", func() bool { return late.has(RevokeUser, "mallory") })
	// One that lapses is dropped, from the store too.
	if _, err := a.Revoke(ctx, Revocation{Kind: RevokeUsername, Name: "1:bob", Until: time.Now().Add(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see the short one", func() bool { return b.has(RevokeUsername, "1:bob") })
	waitFor(t, "the short one to lapse", func() bool { return !b.has(RevokeUsername, "1:bob") && len(b.List()) == 1 })
	waitFor(t, "the short one to leave the store", func() bool { n, _ := c.HLen(ctx, "t:revoked").Result(); return n == 1 })
	// Malformed records are skipped and counted.
	c.HSet(ctx, "t:revoked", "user:eve", "not json", "user:liar", `{"kind":"user","name":"someone-else","until":"2099-01-01T00:00:00Z"}`)
	waitFor(t, "malformed records counted", func() bool { return b.Malformed() >= 2 })
	if got := b.List(); len(got) != 1 || got[0].Name != "mallory" {
		t.Fatalf("list %+v", got)
	}
	// Lifted on b, gone on a.
	if had, err := b.Lift(ctx, RevokeUser, "mallory"); err != nil || !had {
		t.Fatalf("lift: %v %v", had, err)
	}
	waitFor(t, "a to see it lifted", func() bool { return !a.has(RevokeUser, "mallory") })
	if had, _ := b.Lift(ctx, RevokeUser, "mallory"); had {
		t.Fatal("lifted twice")
	}
}

func TestRevocationsLocal(t *testing.T) {
	n := startRevocations(t, RevocationOptions{Node: "solo"})
	ctx := context.Background()
	if _, err := n.Revoke(ctx, Revocation{Kind: "group", Name: "x", Until: time.Now().Add(time.Hour)}); err == nil {
		t.Fatal("an unknown kind was accepted")
	}
	if _, err := n.Revoke(ctx, Revocation{Kind: RevokeUser, Name: "alice", Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if !n.has(RevokeUser, "alice") || len(n.List()) != 1 {
		t.Fatal("local revocation not applied")
	}
	if had, err := n.Lift(ctx, RevokeUser, "alice"); err != nil || !had || n.has(RevokeUser, "alice") {
		t.Fatalf("local lift: %v %v", had, err)
	}
}
