package netwatch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// DefaultDebounce is Options.Debounce's default.
const DefaultDebounce = 200 * time.Millisecond

// retryDelay is the least Watch waits before re-reading the addresses
// after a read failed.
const retryDelay = time.Second

// Options configure Watch.
type Options struct {
	// Debounce is how long Watch waits, after the first notification of a
	// burst, before it re-reads the addresses; notifications arriving in
	// the meantime join the burst. The wait starts at the first
	// notification and is not extended by later ones, so a constant
	// stream of notifications still gets a re-read every Debounce.
	// 0 or less means DefaultDebounce.
	Debounce time.Duration
	// Initial is the address list the caller already acts on, normally
	// what Addrs (which never returns a nil list) returned just before
	// Watch; it need not be sorted. When it is not nil, Watch
	// re-reads the addresses once it has subscribed and calls onChange if
	// they differ from Initial, so that a change between the caller's
	// Addrs and the subscription is not missed. When it is nil, Watch's
	// own first read, after subscribing, is the list it compares with, and
	// a change before that is not reported.
	Initial []netip.Addr
	// Log receives debug messages about notifications and re-reads, an
	// info message for each change delivered and warnings for failed
	// re-reads. Nil discards them.
	Log *slog.Logger
}

// subscription is the source of change notifications Watch reads: an
// rtnetlink socket on Linux, a fake in tests.
type subscription interface {
	// wait blocks until the kernel reports a change, or reports that
	// notifications were lost, and returns nil; it returns an error when
	// the subscription failed or was closed.
	wait() error
	// close ends the subscription and makes a blocked wait return.
	close() error
}

// watch is Watch on an open subscription, which it closes before it
// returns: it reads the first list (or takes o.Initial), runs a goroutine
// that turns sub's notifications into signals on a channel, and runs the
// debounce loop on them until ctx ends (nil) or sub fails (its error).
func watch(ctx context.Context, o Options, sub subscription, read func() ([]netip.Addr, error), onChange func([]netip.Addr)) error {
	closeSub := sync.OnceFunc(func() { _ = sub.close() })
	defer closeSub()
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// events holds at most one pending signal: the reader never blocks on
	// it, and any number of notifications before the loop looks at the
	// channel count as one.
	events := make(chan struct{}, 1)
	var last []netip.Addr
	if o.Initial != nil {
		last = normalize(o.Initial)
		events <- struct{}{} // compare with the caller's list once subscribed
	} else {
		var err error
		if last, err = read(); err != nil {
			return fmt.Errorf("netwatch: reading the initial addresses: %w", err)
		}
	}

	var waitErr error // set before events is closed
	go func() {
		defer close(events)
		for {
			if waitErr = sub.wait(); waitErr != nil {
				return
			}
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}()
	stop := context.AfterFunc(ctx, closeSub)
	defer stop()

	debounce := o.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	l := loop{
		debounce: debounce,
		retry:    max(debounce, retryDelay),
		after:    time.After,
		read:     read,
		onChange: onChange,
		log:      log,
	}
	l.run(ctx, events, last)

	closeSub()
	for range events { // until the reader has returned
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("netwatch: waiting for rtnetlink notifications: %w", waitErr)
}

// loop turns bursts of change signals into re-reads of the address list
// and calls onChange with each list that differs from the last one it
// delivered (or was started with).
type loop struct {
	debounce time.Duration // from the first signal of a burst to the re-read
	retry    time.Duration // from a failed re-read to the next one
	after    func(time.Duration) <-chan time.Time
	read     func() ([]netip.Addr, error)
	onChange func([]netip.Addr)
	log      *slog.Logger
}

// run consumes events until ctx ends or events is closed. last is the list
// the caller already has; read must return lists normalized like Addrs's.
func (l *loop) run(ctx context.Context, events <-chan struct{}, last []netip.Addr) {
	var fire <-chan time.Time // nil unless a re-read is scheduled
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
			if fire == nil {
				l.log.Debug("netwatch: address or link notification; re-reading addresses", "after", l.debounce)
				fire = l.after(l.debounce)
			}
		case <-fire:
			fire = nil
			cur, err := l.read()
			if err != nil {
				l.log.Warn("netwatch: re-reading addresses failed; retrying", "err", err, "after", l.retry)
				fire = l.after(l.retry)
				continue
			}
			if slices.Equal(cur, last) {
				l.log.Debug("netwatch: addresses unchanged", "count", len(cur))
				continue
			}
			added, removed := diff(last, cur)
			l.log.Info("netwatch: host addresses changed", "added", added, "removed", removed, "count", len(cur))
			last = cur
			l.onChange(slices.Clone(cur))
		}
	}
}

// diff returns the addresses of the sorted list b missing from the sorted
// list a, and those of a missing from b.
func diff(a, b []netip.Addr) (added, removed []netip.Addr) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Less(b[j])):
			removed = append(removed, a[i])
			i++
		case i == len(a) || b[j].Less(a[i]):
			added = append(added, b[j])
			j++
		default:
			i++
			j++
		}
	}
	return added, removed
}

// normalize returns the unicast addresses of addrs, unmapped and without
// zones, sorted and deduplicated, in a new slice that is never nil.
func normalize(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// interfaceAddrs is Addrs through net.Interfaces: the addresses of every
// interface that is up. It is Addrs outside Linux, and a cross-check of
// the netlink Addrs in Linux tests.
func interfaceAddrs() ([]netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("netwatch: listing interfaces: %w", err)
	}
	var addrs []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		as, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("netwatch: listing the addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range as {
			var ip net.IP
			switch a := a.(type) {
			case *net.IPNet:
				ip = a.IP
			case *net.IPAddr:
				ip = a.IP
			}
			if addr, ok := netip.AddrFromSlice(ip); ok {
				addrs = append(addrs, addr)
			}
		}
	}
	return normalize(addrs), nil
}
