package cluster

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryrtc/ferry/internal/testutil"
)

func rec(node string, id uint64, user string, final bool, end time.Time, to, from uint64) Record {
	return Record{Node: node, Session: "s1", ID: id, User: user, Username: "1:" + user, Start: end.Add(-time.Minute),
		End: end, Final: final, ToPeerPackets: to / 100, ToPeerBytes: to, FromPeerPackets: from / 100, FromPeerBytes: from}
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	recs := []Record{
		rec("a", 1, "alice", false, t0, 1000, 500),                  // a minute in
		rec("a", 1, "alice", false, t0.Add(time.Minute), 2000, 900), // two minutes in
		rec("a", 1, "alice", true, t0.Add(90*time.Second), 2500, 1000),
		rec("b", 1, "alice", false, t0, 300, 300), // another node's allocation 1, still live
		rec("a", 2, "bob", true, t0, 100, 100),
	}
	got := Summarize(recs, "")
	if len(got) != 2 || got[0].User != "alice" || got[1].User != "bob" {
		t.Fatalf("Summarize = %+v", got)
	}
	if a := got[0]; a.Allocations != 2 || a.ToPeerBytes != 2800 || a.FromPeerBytes != 1300 {
		t.Fatalf("alice: %+v, want 2 allocations, 2800 and 1300 bytes", a)
	}
	if only := Summarize(recs, "bob"); len(only) != 1 || only[0].ToPeerBytes != 100 {
		t.Fatalf("bob only: %+v", only)
	}
	// Final wins even when an interim one was taken later.
	late := append(recs, rec("a", 2, "bob", false, t0.Add(time.Hour), 999999, 0))
	if b := Summarize(late, "bob")[0]; b.ToPeerBytes != 100 {
		t.Fatalf("a later interim record overrode the final one: %+v", b)
	}
}

func startWriter(t *testing.T, o UsageOptions) *UsageWriter {
	t.Helper()
	w, err := NewUsageWriter(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

func TestUsageStreamSurvivesRedisLoss(t *testing.T) {
	rs := testutil.StartDurableRedis(t)
	c := client(t, rs)
	w := startWriter(t, UsageOptions{Client: c, Prefix: "u:", Log: testutil.Logger(t)})
	t0 := time.Now().Truncate(time.Second)
	for i := range 10 {
		w.Add(rec("a", uint64(i), "alice", true, t0, 100, 50))
	}
	waitFor(t, "ten records written", func() bool { return w.Written() == 10 })
	// Malformed entries in the stream are skipped and counted.
	ctx := context.Background()
	c.XAdd(ctx, &redis.XAddArgs{Stream: "u:usage", Values: []any{"record", "not json"}})
	// Redis dies: records queue, and go out when it is back; none is lost.
	rs.Kill(t)
	for i := range 5 {
		w.Add(rec("b", uint64(i), "bob", true, t0, 200, 0))
	}
	waitFor(t, "a failed write", func() bool { return w.Failures() > 0 })
	rs.Start(t)
	waitFor(t, "the queued records written", func() bool { return w.Written() == 15 })
	recs, skipped, err := ReadUsage(ctx, c, "u:", t0.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 15 || skipped != 1 {
		t.Fatalf("read %d records, skipped %d; want 15 and 1", len(recs), skipped)
	}
	sum := Summarize(recs, "")
	if len(sum) != 2 || sum[0].ToPeerBytes != 1000 || sum[1].ToPeerBytes != 1000 || w.Dropped() != 0 {
		t.Fatalf("summary %+v, dropped %d", sum, w.Dropped())
	}
}

func TestUsageFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "usage.jsonl")
	w := startWriter(t, UsageOptions{File: path})
	t0 := time.Now().Truncate(time.Second)
	w.Add(rec("solo", 1, "alice", true, t0.Add(-48*time.Hour), 5, 5))
	w.Add(rec("solo", 2, "alice", true, t0, 7, 3))
	waitFor(t, "two records written", func() bool { return w.Written() == 2 })
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("garbage\n")
	f.Close()
	f, _ = os.Open(path)
	defer f.Close()
	recs, skipped, err := ReadUsageFile(f, t0.Add(-24*time.Hour))
	if err != nil || len(recs) != 1 || recs[0].ID != 2 || skipped != 1 {
		t.Fatalf("read %+v, skipped %d, %v", recs, skipped, err)
	}
}
