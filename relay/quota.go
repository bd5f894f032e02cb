package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/ratelimit"
)

// ErrCapacity is wrapped by relay allocation errors refused by the total
// allocation cap; pion answers them with 508 (Insufficient Capacity).
var ErrCapacity = errors.New("server allocation capacity reached")

const (
	// reservationTTL bounds how long a QuotaHandler admission holds a slot
	// of the user's quota waiting for its relay. pion calls the
	// RelayAddressGenerator microseconds after the QuotaHandler on the same
	// goroutine; only an Allocate that fails in between (LIFETIME 0, a
	// 5-tuple raced by a retransmission) leaves a reservation unclaimed.
	reservationTTL = 5 * time.Second
	// minBurst is the least burst of a bandwidth cap, in bytes: a few
	// full-size datagrams, so a cap never refuses a packet for its size.
	minBurst = 8 << 10
)

// QuotaOptions configures a Quota. Zero fields mean unlimited.
type QuotaOptions struct {
	// UserAllocations caps the live allocations of one user (pion's user
	// ID: the static user's name, or the user part of a REST username).
	// Past it pion answers 486 (Allocation Quota Reached), through the
	// QuotaHandler from NewQuotaHandler.
	UserAllocations int
	// TotalAllocations caps the live allocations of the server. Past it the
	// PortAllocator refuses relays with ErrCapacity and pion answers 508
	// (Insufficient Capacity).
	TotalAllocations int
	// AllocationBandwidth and UserBandwidth cap relayed bytes per second of
	// one allocation and of all allocations of one user, each direction
	// separately (client to peers, peers to client), as coturn's max-bps
	// does. The burst is a tenth of a second's worth, at least 8 KiB.
	// Datagrams over the cap are dropped and counted; RFC 6062 TCP peer
	// connections, whose bytes cannot be dropped, are slowed to the cap.
	AllocationBandwidth, UserBandwidth int64
	// Log receives debug lines on refusals; nil discards.
	Log *slog.Logger
}

// Quota counts allocations per user and in total and holds the bandwidth
// buckets. Counts follow the relay sockets themselves: an allocation counts
// from the moment its relay is bound until pion closes it, however the
// allocation ends (expiry, Refresh 0, TCP close, admin close, shutdown), so
// no event can be missed. The per-user cap is checked by the QuotaHandler,
// which reserves a slot the relay then claims; reservations that no relay
// claims expire after a few seconds.
//
// Allocation-time bookkeeping takes a mutex; the per-packet bandwidth check
// takes none and allocates nothing (ratelimit.Bucket). A nil *Quota admits
// everything.
type Quota struct {
	userMax, totalMax int
	allocRate         ratelimit.Rate
	userRate          ratelimit.Rate
	epoch             time.Time
	log               *slog.Logger

	total atomic.Int64 // live counted allocations

	mu        sync.Mutex // allocation time only
	users     map[string]*userQuota
	relays    map[relayKey]*allocQuota
	lastSweep time.Time

	droppedPackets atomic.Uint64
	droppedBytes   atomic.Uint64
	refusedUser    atomic.Uint64
	refusedTotal   atomic.Uint64
}

type userQuota struct {
	active  int
	pending []time.Time // QuotaHandler admissions not yet claimed, oldest first

	// Shared by the user's allocations; read without the lock (the
	// userQuota lives while any allocation of the user does).
	toPeer, fromPeer ratelimit.Bucket
}

// allocQuota is one counted allocation.
type allocQuota struct {
	q    *Quota
	user string
	u    *userQuota
	key  relayKey

	toPeer, fromPeer ratelimit.Bucket

	releaseOnce sync.Once
}

// QuotaStats is a point-in-time copy of a Quota's counters.
type QuotaStats struct {
	// Allocations is the number of live counted allocations; Users the
	// number of users holding at least one.
	Allocations, Users int
	// RefusedUser counts Allocate requests refused by the per-user cap
	// (486); RefusedTotal those refused by the total cap (508).
	RefusedUser, RefusedTotal uint64
	// DroppedPackets and DroppedBytes count relayed datagrams dropped by a
	// bandwidth cap, both directions.
	DroppedPackets, DroppedBytes uint64
}

// NewQuota checks o and returns a Quota.
func NewQuota(o QuotaOptions) (*Quota, error) {
	switch {
	case o.UserAllocations < 0:
		return nil, fmt.Errorf("relay: user allocation quota %d is negative", o.UserAllocations)
	case o.TotalAllocations < 0:
		return nil, fmt.Errorf("relay: total allocation quota %d is negative", o.TotalAllocations)
	case o.AllocationBandwidth < 0:
		return nil, fmt.Errorf("relay: allocation bandwidth %d is negative", o.AllocationBandwidth)
	case o.UserBandwidth < 0:
		return nil, fmt.Errorf("relay: user bandwidth %d is negative", o.UserBandwidth)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Quota{
		userMax:   o.UserAllocations,
		totalMax:  o.TotalAllocations,
		allocRate: bandwidthRate(o.AllocationBandwidth),
		userRate:  bandwidthRate(o.UserBandwidth),
		epoch:     time.Now(),
		log:       log,
		users:     map[string]*userQuota{},
		relays:    map[relayKey]*allocQuota{},
	}, nil
}

func bandwidthRate(bps int64) ratelimit.Rate {
	return ratelimit.NewRate(bps, time.Second, max(bps/10, minBurst))
}

// shaping reports whether any bandwidth cap is set.
func (q *Quota) shaping() bool {
	return q != nil && (!q.allocRate.Unlimited() || !q.userRate.Unlimited())
}

// clock is the bucket clock: monotonic nanoseconds since NewQuota.
func (q *Quota) clock() int64 { return int64(time.Since(q.epoch)) }

// NewQuotaHandler returns pion's QuotaHandler for q's per-user cap: it
// admits an Allocate when the user's live and reserved allocations are
// below the cap, reserving a slot that the relay socket then claims.
// onRefuse, which may be nil, is called for every refusal (metrics). A nil
// q admits everyone.
func NewQuotaHandler(q *Quota, onRefuse func()) turn.QuotaHandler {
	return func(user, _ string, src net.Addr) bool {
		if q.reserve(user) {
			return true
		}
		q.log.Debug("allocation refused: user quota reached", "user", user, "client", src, "quota", q.userMax)
		if onRefuse != nil {
			onRefuse()
		}
		return false
	}
}

// reserve admits one more allocation of user if the cap allows.
func (q *Quota) reserve(user string) bool {
	if q == nil || q.userMax == 0 {
		return true
	}
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sweep(now)
	u := q.user(user)
	u.prune(now)
	if u.active+len(u.pending) >= q.userMax {
		q.refusedUser.Add(1)
		return false
	}
	u.pending = append(u.pending, now)
	return true
}

// user returns user's entry, creating it. Caller holds mu.
func (q *Quota) user(name string) *userQuota {
	u := q.users[name]
	if u == nil {
		u = &userQuota{}
		q.users[name] = u
	}
	return u
}

// prune drops reservations older than reservationTTL.
func (u *userQuota) prune(now time.Time) {
	i := 0
	for i < len(u.pending) && now.Sub(u.pending[i]) > reservationTTL {
		i++
	}
	u.pending = u.pending[i:]
}

// sweep forgets users left with neither allocations nor live
// reservations, at most once per reservationTTL. Caller holds mu.
func (q *Quota) sweep(now time.Time) {
	if now.Sub(q.lastSweep) < reservationTTL {
		return
	}
	q.lastSweep = now
	for name, u := range q.users {
		u.prune(now)
		if u.active == 0 && len(u.pending) == 0 {
			delete(q.users, name)
		}
	}
}

// acquire counts a new allocation of user before its relay is bound,
// claiming the reservation the QuotaHandler made. It refuses with
// ErrCapacity past the total cap. An empty user (pion probing for an
// EVEN-PORT) is not counted: nil, nil.
func (q *Quota) acquire(user string) (*allocQuota, error) {
	if q == nil || user == "" {
		return nil, nil
	}
	if q.totalMax > 0 {
		for {
			n := q.total.Load()
			if n >= int64(q.totalMax) {
				q.refusedTotal.Add(1)
				q.unreserve(user)
				q.log.Debug("allocation refused: total allocation quota reached", "user", user, "quota", q.totalMax)
				return nil, fmt.Errorf("%d live allocations: %w", n, ErrCapacity)
			}
			if q.total.CompareAndSwap(n, n+1) {
				break
			}
		}
	} else {
		q.total.Add(1)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	u := q.user(user)
	if len(u.pending) > 0 {
		u.pending = u.pending[1:]
	}
	u.active++
	return &allocQuota{q: q, user: user, u: u}, nil
}

// unreserve drops the oldest reservation of user (a refused relay).
func (q *Quota) unreserve(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if u := q.users[user]; u != nil && len(u.pending) > 0 {
		u.pending = u.pending[1:]
	}
}

// bound records the relay address of a counted allocation, so peer
// connections dialed for its Connect requests share its buckets.
func (a *allocQuota) bound(relayAddr net.Addr) {
	if a == nil {
		return
	}
	key, ok := keyOf(relayAddr)
	if !ok {
		return
	}
	a.q.mu.Lock()
	defer a.q.mu.Unlock()
	a.key = key
	a.q.relays[key] = a
}

// release uncounts the allocation, once.
func (a *allocQuota) release() {
	if a == nil {
		return
	}
	a.releaseOnce.Do(func() {
		q := a.q
		q.total.Add(-1)
		q.mu.Lock()
		defer q.mu.Unlock()
		a.u.active--
		if a.u.active == 0 && len(a.u.pending) == 0 && q.users[a.user] == a.u {
			delete(q.users, a.user)
		}
		if q.relays[a.key] == a {
			delete(q.relays, a.key)
		}
	})
}

// lookup returns the counted allocation with relay address relayAddr.
func (q *Quota) lookup(relayAddr net.Addr) *allocQuota {
	if q == nil {
		return nil
	}
	key, ok := keyOf(relayAddr)
	if !ok {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.relays[key]
}

// allow takes n bytes from the allocation's and the user's bucket of one
// direction, reporting false (and counting a drop) if either is empty.
func (a *allocQuota) allow(toPeer bool, n int) bool {
	q := a.q
	ab, ub := &a.fromPeer, &a.u.fromPeer
	if toPeer {
		ab, ub = &a.toPeer, &a.u.toPeer
	}
	now := q.clock()
	if ab.Take(q.allocRate, now, int64(n)) {
		if ub.Take(q.userRate, now, int64(n)) {
			return true
		}
		ab.Refund(q.allocRate, int64(n))
	}
	q.droppedPackets.Add(1)
	q.droppedBytes.Add(uint64(n))
	return false
}

// delay reserves n bytes of one direction for a stream and returns how
// long to wait before moving them.
func (a *allocQuota) delay(toPeer bool, n int) time.Duration {
	q := a.q
	ab, ub := &a.fromPeer, &a.u.fromPeer
	if toPeer {
		ab, ub = &a.toPeer, &a.u.toPeer
	}
	now := q.clock()
	return max(ab.Reserve(q.allocRate, now, int64(n)), ub.Reserve(q.userRate, now, int64(n)))
}

// Stats returns the counters.
func (q *Quota) Stats() QuotaStats {
	if q == nil {
		return QuotaStats{}
	}
	q.mu.Lock()
	users := 0
	for _, u := range q.users {
		if u.active > 0 {
			users++
		}
	}
	q.mu.Unlock()
	return QuotaStats{
		Allocations:    int(q.total.Load()),
		Users:          users,
		RefusedUser:    q.refusedUser.Load(),
		RefusedTotal:   q.refusedTotal.Load(),
		DroppedPackets: q.droppedPackets.Load(),
		DroppedBytes:   q.droppedBytes.Load(),
	}
}
