package ratelimit

import (
	"sync"
	"testing"
	"time"
)

func TestLogBudget(t *testing.T) {
	r := NewRate(6, time.Minute, 10) // a line every 10s after a burst of 10
	sec := int64(time.Second)
	var b LogBudget
	written := 0
	for i := range 100 { // 100 lines in the first second
		if b.Allow(r, int64(i)*sec/100) {
			written++
		}
	}
	if written != 10 {
		t.Fatalf("%d lines written of a burst of 10", written)
	}
	if n, _ := b.Suppressed(30*sec, int64(time.Minute)); n != 0 {
		t.Fatalf("reported %d lines before a minute passed", n)
	}
	n, over := b.Suppressed(61*sec, int64(time.Minute))
	if n != 90 || over < int64(time.Minute) {
		t.Fatalf("reported %d lines over %v, want 90 over a minute or more", n, time.Duration(over))
	}
	if n, _ := b.Suppressed(200*sec, int64(time.Minute)); n != 0 {
		t.Fatalf("reported %d lines twice", n)
	}
}

// Every line left out is reported exactly once, whoever reports.
func TestLogBudgetConcurrent(t *testing.T) {
	r := NewRate(1, time.Hour, 1)
	var b LogBudget
	var wg sync.WaitGroup
	var mu sync.Mutex
	var reported uint64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				now := int64(g*1000 + i)
				b.Allow(r, now)
				if n, _ := b.Suppressed(now, 10); n > 0 {
					mu.Lock()
					reported += n
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	n, _ := b.Suppressed(1<<40, 10)
	if reported+n != 8000-1 {
		t.Fatalf("reported %d + %d lines left out, want %d", reported, n, 8000-1)
	}
}
