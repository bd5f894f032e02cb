package ratelimit

import (
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestBucketTake(t *testing.T) {
	tests := []struct {
		name   string
		rate   Rate
		takes  []int64 // units per take, all at t=0
		wantOK []bool
	}{
		{"unlimited", Rate{}, []int64{1 << 40, 1 << 40}, []bool{true, true}},
		{"burst of 3", NewRate(1, time.Second, 3), []int64{1, 1, 1, 1}, []bool{true, true, true, false}},
		{"bytes", NewRate(1000, time.Second, 1500), []int64{1000, 500, 1}, []bool{true, true, false}},
		{"too big for the burst", NewRate(1000, time.Second, 100), []int64{101, 100}, []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Bucket
			for i, n := range tt.takes {
				if got := b.Take(tt.rate, 0, n); got != tt.wantOK[i] {
					t.Fatalf("take %d (%d units) = %v, want %v", i, n, got, tt.wantOK[i])
				}
			}
		})
	}
}

func TestBucketRefillsOverTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRate(10, time.Second, 2) // one unit per 100ms
		var b Bucket
		start := time.Now()
		now := func() int64 { return int64(time.Since(start)) }
		for i, want := range []bool{true, true, false} {
			if got := b.Take(r, now(), 1); got != want {
				t.Fatalf("take %d = %v: burst of 2 not honoured", i, got)
			}
		}
		if !b.Empty(r, now(), 1) {
			t.Fatal("Empty = false on an empty bucket")
		}
		time.Sleep(100 * time.Millisecond)
		if b.Empty(r, now(), 1) || !b.Take(r, now(), 1) || b.Take(r, now(), 1) {
			t.Fatal("one unit should be back after 100ms, and only one")
		}
		time.Sleep(time.Hour)
		if !b.Take(r, now(), 2) || b.Take(r, now(), 1) {
			t.Fatal("an idle bucket refills to its burst, not beyond")
		}
		b.Refund(r, 1)
		if !b.Take(r, now(), 1) {
			t.Fatal("refunded unit not available")
		}
	})
}

func TestBucketReserveShapes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := NewRate(1000, time.Second, 100) // 1000 B/s, 100 B burst
		var b Bucket
		start := time.Now()
		sent := int64(0)
		for range 50 {
			wait := b.Reserve(r, int64(time.Since(start)), 100)
			time.Sleep(wait)
			sent += 100
		}
		took := time.Since(start)
		// 5000 bytes at 1000 B/s with 100 bytes free: 4.9s.
		if took < 4800*time.Millisecond || took > 5000*time.Millisecond {
			t.Fatalf("5000 bytes took %v at 1000 B/s", took)
		}
	})
}

// TestBucketConcurrent: concurrent takers never get more than the burst.
func TestBucketConcurrent(t *testing.T) {
	r := NewRate(1, time.Hour, 100)
	var b Bucket
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 100 {
				if b.Take(r, 0, 1) {
					n++
				}
			}
			mu.Lock()
			granted += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if granted != 100 {
		t.Fatalf("granted %d units, want exactly the burst of 100", granted)
	}
}

func TestTable(t *testing.T) {
	tab := NewTable(1000)
	if tab.Len() != 1024 {
		t.Fatalf("Len = %d, want 1024", tab.Len())
	}
	r := NewRate(1, time.Hour, 1)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	if tab.Peek(a) != nil {
		t.Fatal("Peek of an unseen address is not nil")
	}
	if !tab.Bucket(a).Take(r, 0, 1) || tab.Bucket(a).Take(r, 0, 1) {
		t.Fatal("per-address bucket not kept")
	}
	if tab.Peek(a) == nil {
		t.Fatal("Peek of a seen address is nil")
	}
	if !tab.Bucket(netip.MustParseAddr("::ffff:192.0.2.2")).Take(r, 0, 1) || tab.Bucket(b).Take(r, 0, 1) {
		t.Fatal("IPv4-mapped address not keyed as its IPv4 address")
	}
	v6a, v6b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	if !tab.Bucket(v6a).Take(r, 0, 1) || tab.Bucket(v6b).Take(r, 0, 1) {
		t.Fatal("addresses of one /64 do not share a bucket")
	}
	if !tab.Bucket(netip.MustParseAddr("2001:db8:1:3::1")).Take(r, 0, 1) {
		t.Fatal("another /64 shares the bucket")
	}
}

// TestTableEviction: a table of one slot keeps only the newest address,
// which starts with a full bucket.
func TestTableEviction(t *testing.T) {
	tab := NewTable(1)
	r := NewRate(1, time.Hour, 1)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	tab.Bucket(a).Take(r, 0, 1)
	if !tab.Bucket(b).Take(r, 0, 1) {
		t.Fatal("evicting address did not start with a full bucket")
	}
	if tab.Peek(a) != nil {
		t.Fatal("evicted address still present")
	}
}

func TestNoAllocations(t *testing.T) {
	tab := NewTable(64)
	r := NewRate(1000, time.Second, 10)
	ip := netip.MustParseAddr("2001:db8::1")
	var now int64
	if n := testing.AllocsPerRun(1000, func() {
		now += 1000
		tab.Bucket(ip).Take(r, now, 1)
		_ = tab.Peek(ip).Empty(r, now, 1)
	}); n != 0 {
		t.Fatalf("%v allocations per lookup and take", n)
	}
}
