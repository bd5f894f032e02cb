package netwatch

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// list parses addresses for tests.
func list(ss ...string) []netip.Addr {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

const waitLong = 5 * time.Second

// fakeLoop drives loop.run deterministically: the test sends the signals,
// fires the debounce timer and scripts the reads.
type fakeLoop struct {
	t      *testing.T
	events chan struct{}
	timers chan time.Duration // each after() call, with its duration
	fire   chan time.Time     // fires the pending timer
	reads  chan chan readResult
	change chan []netip.Addr
	done   chan struct{}
	cancel context.CancelFunc
}

type readResult struct {
	addrs []netip.Addr
	err   error
}

func startLoop(t *testing.T, last []netip.Addr, eventsCap int) *fakeLoop {
	f := &fakeLoop{
		t:      t,
		events: make(chan struct{}, eventsCap),
		timers: make(chan time.Duration, 100),
		fire:   make(chan time.Time),
		reads:  make(chan chan readResult),
		change: make(chan []netip.Addr, 100),
		done:   make(chan struct{}),
	}
	l := loop{
		debounce: 200 * time.Millisecond,
		retry:    time.Second,
		after: func(d time.Duration) <-chan time.Time {
			f.timers <- d
			return f.fire
		},
		read: func() ([]netip.Addr, error) {
			c := make(chan readResult)
			f.reads <- c
			r := <-c
			return r.addrs, r.err
		},
		onChange: func(a []netip.Addr) { f.change <- a },
		log:      testutil.Logger(t),
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() {
		defer close(f.done)
		l.run(ctx, f.events, last)
	}()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
	return f
}

// signal sends one event the way watch's reader does: without blocking,
// coalescing with a pending one.
func (f *fakeLoop) signal() {
	select {
	case f.events <- struct{}{}:
	default:
	}
}

func (f *fakeLoop) expectTimer(want time.Duration) {
	f.t.Helper()
	select {
	case d := <-f.timers:
		if d != want {
			f.t.Fatalf("timer of %v, want %v", d, want)
		}
	case <-time.After(waitLong):
		f.t.Fatalf("no timer of %v started", want)
	}
}

func (f *fakeLoop) noTimer() {
	f.t.Helper()
	select {
	case d := <-f.timers:
		f.t.Fatalf("unexpected timer of %v", d)
	default:
	}
}

// fireTimer fires the pending timer; the send completes only when run is
// back in its select, so everything sent before is processed.
func (f *fakeLoop) fireTimer() {
	f.t.Helper()
	select {
	case f.fire <- time.Now():
	case <-time.After(waitLong):
		f.t.Fatal("run did not wait for the timer")
	}
}

// expectRead waits for run's read and returns a function that answers it.
func (f *fakeLoop) expectRead() func([]netip.Addr, error) {
	f.t.Helper()
	select {
	case c := <-f.reads:
		return func(a []netip.Addr, err error) { c <- readResult{a, err} }
	case <-time.After(waitLong):
		f.t.Fatal("no read")
		return nil
	}
}

func (f *fakeLoop) expectChange(want []netip.Addr) []netip.Addr {
	f.t.Helper()
	select {
	case got := <-f.change:
		if !slices.Equal(got, want) {
			f.t.Fatalf("onChange(%v), want onChange(%v)", got, want)
		}
		return got
	case <-time.After(waitLong):
		f.t.Fatalf("no onChange(%v)", want)
		return nil
	}
}

func (f *fakeLoop) noChange() {
	f.t.Helper()
	select {
	case got := <-f.change:
		f.t.Fatalf("unexpected onChange(%v)", got)
	default:
	}
}

// sync makes sure run has processed everything sent so far: it is back in
// its select once an (unbuffered) signal went through.
func (f *fakeLoop) sync() {
	f.t.Helper()
	ev := f.events
	if cap(ev) != 0 {
		f.t.Fatal("sync needs an unbuffered events channel")
	}
	select {
	case ev <- struct{}{}:
	case <-time.After(waitLong):
		f.t.Fatal("run did not take a signal")
	}
}

func TestLoopCoalescesBurst(t *testing.T) {
	a := list("192.0.2.1")
	b := list("192.0.2.1", "198.18.0.1")
	f := startLoop(t, a, 0)
	for range 10 {
		f.sync() // each signal is taken; only the first starts the timer
	}
	f.expectTimer(200 * time.Millisecond)
	f.fireTimer() // run is back in its select: all ten are processed
	f.noTimer()
	f.expectRead()(b, nil)
	f.expectChange(b)
	f.sync() // a new burst after the read starts a new timer
	f.expectTimer(200 * time.Millisecond)
	f.fireTimer()
	f.expectRead()(b, nil)
	f.sync()
	f.noChange()
}

func TestLoopDeliversOnlyChanges(t *testing.T) {
	const d = 200 * time.Millisecond
	a := list("192.0.2.1", "2001:db8::1")
	b := list("192.0.2.1")
	f := startLoop(t, a, 0)
	step := func(read []netip.Addr, changed bool) {
		t.Helper()
		f.sync() // starts a re-read, and is a barrier for the last one
		f.expectTimer(d)
		f.noChange()
		f.fireTimer()
		f.expectRead()(read, nil)
		f.sync() // barrier: this read's list is processed
		f.expectTimer(d)
		if changed {
			f.expectChange(read)
		} else {
			f.noChange()
		}
		f.fireTimer()
		f.expectRead()(read, nil) // the same list again: never a change
	}
	step(a, false) // the list the loop started with: not delivered
	step(b, true)
	step(b, false)
	step(slices.Clone(b), false)
	step(a, true) // back to a: a change from b
	step(list(), true)
	step(list(), false)
	f.sync()
	f.expectTimer(d)
	f.noChange()
}

func TestLoopSignalDuringReadReadsAgain(t *testing.T) {
	a := list("192.0.2.1")
	b := list("192.0.2.1", "192.0.2.2")
	c := list("192.0.2.2")
	f := startLoop(t, a, 1)
	f.signal()
	f.expectTimer(200 * time.Millisecond)
	f.fireTimer()
	answer := f.expectRead()
	f.signal() // while the read runs: it may have missed this change
	f.signal()
	answer(b, nil)
	f.expectChange(b)
	f.expectTimer(200 * time.Millisecond)
	f.fireTimer()
	f.expectRead()(c, nil)
	f.expectChange(c)
	f.noTimer()
}

func TestLoopRetriesFailedRead(t *testing.T) {
	a := list("192.0.2.1")
	b := list("192.0.2.2")
	f := startLoop(t, a, 0)
	f.sync()
	f.expectTimer(200 * time.Millisecond)
	f.fireTimer()
	f.expectRead()(nil, errors.New("dump failed"))
	f.expectTimer(time.Second) // the retry, without a new signal
	f.sync()                   // a signal meanwhile joins the retry
	f.fireTimer()
	f.noTimer()
	f.noChange()
	f.expectRead()(b, nil)
	f.expectChange(b)
}

func TestLoopCalleeOwnsTheList(t *testing.T) {
	a := list("192.0.2.1")
	b := list("192.0.2.1", "192.0.2.2")
	f := startLoop(t, a, 0)
	f.sync()
	f.expectTimer(200 * time.Millisecond)
	f.fireTimer()
	f.expectRead()(b, nil)
	got := f.expectChange(b)
	got[0] = netip.MustParseAddr("203.0.113.9") // must not change the loop's copy
	f.sync()
	f.expectTimer(200 * time.Millisecond)
	f.fireTimer()
	f.expectRead()(list("192.0.2.1", "192.0.2.2"), nil)
	f.sync()
	f.noChange()
}

func TestLoopStops(t *testing.T) {
	t.Run("ctx", func(t *testing.T) {
		f := startLoop(t, nil, 0)
		f.sync()
		f.expectTimer(200 * time.Millisecond) // even with a re-read pending
		f.cancel()
		select {
		case <-f.done:
		case <-time.After(time.Second):
			t.Fatal("run did not return after ctx ended")
		}
	})
	t.Run("events closed", func(t *testing.T) {
		f := startLoop(t, nil, 0)
		close(f.events)
		select {
		case <-f.done:
		case <-time.After(time.Second):
			t.Fatal("run did not return after events was closed")
		}
	})
}

func TestNormalize(t *testing.T) {
	in := []netip.Addr{
		netip.MustParseAddr("fe80::1%eth0"),
		netip.MustParseAddr("::ffff:192.0.2.7"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("192.0.2.7"),
		netip.MustParseAddr("fe80::1"),
		netip.MustParseAddr("10.0.0.1"),
		netip.MustParseAddr("::"),
		netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("ff02::1"),
		netip.MustParseAddr("224.0.0.1"),
		{},
	}
	want := list("10.0.0.1", "192.0.2.7", "2001:db8::1", "fe80::1")
	if got := normalize(in); !slices.Equal(got, want) {
		t.Fatalf("normalize = %v, want %v", got, want)
	}
	if got := normalize(nil); got == nil || len(got) != 0 {
		t.Fatalf("normalize(nil) = %#v, want an empty, non-nil list", got)
	}
}

func TestDiff(t *testing.T) {
	added, removed := diff(list("192.0.2.1", "192.0.2.3", "2001:db8::1"), list("192.0.2.2", "192.0.2.3", "2001:db8::2"))
	if want := list("192.0.2.2", "2001:db8::2"); !slices.Equal(added, want) {
		t.Errorf("added = %v, want %v", added, want)
	}
	if want := list("192.0.2.1", "2001:db8::1"); !slices.Equal(removed, want) {
		t.Errorf("removed = %v, want %v", removed, want)
	}
}

// fakeSub is a subscription fed by the test.
type fakeSub struct {
	notes  chan error // nil: a notification; an error: wait fails with it
	closed chan struct{}
	once   sync.Once
}

func newFakeSub() *fakeSub {
	return &fakeSub{notes: make(chan error), closed: make(chan struct{})}
}

func (s *fakeSub) wait() error {
	select {
	case err := <-s.notes:
		return err
	case <-s.closed:
		return errors.New("closed")
	}
}

func (s *fakeSub) close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// notify delivers one notification, failing t if watch no longer waits.
func (s *fakeSub) notify(t *testing.T, err error) {
	t.Helper()
	select {
	case s.notes <- err:
	case <-time.After(waitLong):
		t.Fatal("watch is not waiting for notifications")
	}
}

// reader is a scripted address list: read returns its current value.
type reader struct {
	mu    sync.Mutex
	addrs []netip.Addr
	err   error
	n     int
}

func (r *reader) set(a []netip.Addr, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs, r.err = a, err
}

func (r *reader) read() ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	return slices.Clone(r.addrs), r.err
}

func (r *reader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

type watchRun struct {
	sub    *fakeSub
	r      *reader
	change chan []netip.Addr
	done   chan error
	cancel context.CancelFunc
}

func startWatch(t *testing.T, o Options, r *reader) *watchRun {
	w := &watchRun{sub: newFakeSub(), r: r, change: make(chan []netip.Addr, 100), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	if o.Debounce == 0 {
		o.Debounce = time.Millisecond
	}
	o.Log = testutil.Logger(t)
	go func() { w.done <- watch(ctx, o, w.sub, r.read, func(a []netip.Addr) { w.change <- a }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.sub.closed:
		case <-time.After(waitLong):
			t.Error("watch did not close its subscription")
		}
	})
	return w
}

func (w *watchRun) expectChange(t *testing.T, want []netip.Addr) {
	t.Helper()
	select {
	case got := <-w.change:
		if !slices.Equal(got, want) {
			t.Fatalf("onChange(%v), want onChange(%v)", got, want)
		}
	case <-time.After(waitLong):
		t.Fatalf("no onChange(%v)", want)
	}
}

// settle waits until watch read the addresses at least n times in all,
// then a little longer for a possible onChange.
func (w *watchRun) settle(t *testing.T, n int) {
	t.Helper()
	testutil.WaitFor(t, waitLong, "a re-read", func() bool { return w.r.count() >= n })
	time.Sleep(20 * time.Millisecond)
}

func (w *watchRun) noChange(t *testing.T) {
	t.Helper()
	select {
	case got := <-w.change:
		t.Fatalf("unexpected onChange(%v)", got)
	default:
	}
}

func (w *watchRun) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatalf("watch returned %v after ctx ended, want nil", err)
		}
	case <-time.After(time.Second):
		t.Fatal("watch did not return within 1s of ctx ending")
	}
}

func TestWatchSkipsInitialList(t *testing.T) {
	before := runtime.NumGoroutine()
	a := list("192.0.2.1", "fe80::1")
	r := &reader{addrs: a}
	w := startWatch(t, Options{}, r)
	testutil.WaitFor(t, waitLong, "the first read", func() bool { return r.count() == 1 })
	w.sub.notify(t, nil)
	w.settle(t, 2)
	w.noChange(t) // unchanged since watch began
	b := list("192.0.2.1", "198.18.5.5", "fe80::1")
	r.set(b, nil)
	w.sub.notify(t, nil)
	w.expectChange(t, b)
	w.stop(t)
	testutil.CheckGoroutines(t, before)
}

func TestWatchInitialOption(t *testing.T) {
	a := list("192.0.2.1")
	b := list("192.0.2.1", "198.18.5.5")
	t.Run("normalized", func(t *testing.T) {
		r := &reader{addrs: b}
		// Unsorted and mapped: Initial is normalized like Addrs's lists.
		w := startWatch(t, Options{Initial: list("::ffff:198.18.5.5", "192.0.2.1", "::ffff:192.0.2.1")}, r)
		w.settle(t, 1)
		w.noChange(t)
		r.set(a, nil)
		w.sub.notify(t, nil)
		w.expectChange(t, a)
		w.stop(t)
	})
	t.Run("unchanged", func(t *testing.T) {
		r := &reader{addrs: a}
		w := startWatch(t, Options{Initial: a}, r)
		w.settle(t, 1)
		w.noChange(t)
		w.stop(t)
	})
	t.Run("changed", func(t *testing.T) {
		r := &reader{addrs: b}
		w := startWatch(t, Options{Initial: a}, r)
		w.expectChange(t, b) // changed before subscribing: no notification
		w.stop(t)
	})
	t.Run("empty", func(t *testing.T) {
		r := &reader{addrs: a}
		w := startWatch(t, Options{Initial: []netip.Addr{}}, r)
		w.expectChange(t, a)
		w.stop(t)
	})
}

func TestWatchErrors(t *testing.T) {
	t.Run("first read", func(t *testing.T) {
		errRead := errors.New("no netlink")
		w := startWatch(t, Options{}, &reader{err: errRead})
		select {
		case err := <-w.done:
			if !errors.Is(err, errRead) {
				t.Fatalf("watch = %v, want an error wrapping %v", err, errRead)
			}
		case <-time.After(waitLong):
			t.Fatal("watch did not return")
		}
		select {
		case <-w.sub.closed:
		default:
			t.Fatal("watch did not close the subscription")
		}
	})
	t.Run("subscription", func(t *testing.T) {
		before := runtime.NumGoroutine()
		errSub := errors.New("recvfrom: EBADF")
		w := startWatch(t, Options{}, &reader{addrs: list("192.0.2.1")})
		w.sub.notify(t, errSub)
		select {
		case err := <-w.done:
			if !errors.Is(err, errSub) {
				t.Fatalf("watch = %v, want an error wrapping %v", err, errSub)
			}
		case <-time.After(waitLong):
			t.Fatal("watch did not return")
		}
		testutil.CheckGoroutines(t, before)
	})
	t.Run("failed re-read is retried", func(t *testing.T) {
		a := list("192.0.2.1")
		b := list("192.0.2.2")
		r := &reader{addrs: a}
		// retry is max(Debounce, 1s): this waits a second.
		w := startWatch(t, Options{}, r)
		w.settle(t, 1)
		r.set(nil, errors.New("dump interrupted"))
		w.sub.notify(t, nil)
		w.settle(t, 2)
		r.set(b, nil)
		w.expectChange(t, b) // from the retry: no notification since
		w.stop(t)
	})
}

func TestWatchStopsOnCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	w := startWatch(t, Options{}, &reader{addrs: list("192.0.2.1")})
	w.stop(t)
	testutil.CheckGoroutines(t, before)
}
