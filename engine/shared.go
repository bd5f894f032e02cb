package engine

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/internal/ratelimit"
	"github.com/ferryrtc/ferry/relay"
)

// Shared is the state every shard of one server sees: the swappable
// inputs (credentials, peer policy, drain switch, nonce key), the limits
// and quotas that span shards (per-address tables, per-user allocations
// and bandwidth, the total), RESERVATION-TOKENs, and the shards' counters.
// It is safe for concurrent use; the per-packet parts are lock-free.
type Shared struct {
	cfg   Config
	epoch time.Time

	creds    atomic.Pointer[auth.Snapshot]
	policy   atomic.Pointer[relay.Policy]
	draining atomic.Bool
	// alternates are where a draining or full node sends new allocations.
	alternates atomic.Pointer[Alternates]
	// revocations are the users and credentials refused.
	revocations atomic.Pointer[Revocations]
	// clusterQuota: Allocates ask the cluster about the user's quota.
	clusterQuota atomic.Bool
	// overBudget are the quota users whose byte budget is spent.
	overBudget atomic.Pointer[map[string]bool]
	nonceKey   atomic.Pointer[[]byte]

	unauthRate, failRate ratelimit.Rate
	unauth, fails        *ratelimit.Table

	logRate ratelimit.Rate
	logs    [numLogKinds]ratelimit.LogBudget

	total atomic.Int64 // live allocations, every shard

	bwAlloc, bwUser ratelimit.Rate

	mu           sync.Mutex
	users        map[string]*userState
	reservations map[[8]byte]*reservation
	tcpLive      map[*Traffic]struct{} // RFC 6062 allocations' counters, for Stats
	stats        []*Stats

	denyReasons []string
	denyIndex   map[string]int

	connSeq atomic.Uint32
}

// userState is one quota user's share of the server: live allocations
// (under Shared.mu) and bandwidth buckets (lock-free), one per direction.
type userState struct {
	name   string
	allocs int
	bw     [2]ratelimit.Bucket
}

// reservation is a port held for a RESERVATION-TOKEN.
type reservation struct {
	relay   RelayID
	addr    netip.AddrPort // bound
	expires int64
}

// NewShared checks cfg and returns the state its shards will share, with
// credentials creds, peer policy policy and a random nonce key. epoch is
// the zero of the monotonic clock every shard measures on (the first
// event's time will do).
func NewShared(cfg Config, creds *auth.Snapshot, policy *relay.Policy, epoch time.Time) (*Shared, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if policy == nil {
		return nil, fmt.Errorf("engine: no peer policy")
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("engine: nonce key: %w", err)
	}
	n := cfg.TrackedIPs
	if n <= 0 {
		n = 1 << 16
	}
	s := &Shared{
		cfg:          cfg,
		epoch:        epoch,
		unauthRate:   ratelimit.NewRate(int64(cfg.UnauthenticatedRate), time.Minute, int64(cfg.UnauthenticatedBurst)),
		failRate:     ratelimit.NewRate(int64(cfg.AuthFailureRate), time.Minute, int64(cfg.AuthFailureBurst)),
		logRate:      ratelimit.NewRate(ClientLogsPerMinute, time.Minute, ClientLogBurst),
		bwAlloc:      ratelimit.NewRate(cfg.AllocationBandwidth, time.Second, max(cfg.AllocationBandwidth/4, 1500)),
		bwUser:       ratelimit.NewRate(cfg.UserBandwidth, time.Second, max(cfg.UserBandwidth/4, 1500)),
		users:        map[string]*userState{},
		reservations: map[[8]byte]*reservation{},
		tcpLive:      map[*Traffic]struct{}{},
		denyReasons:  relay.Reasons(),
		denyIndex:    map[string]int{},
	}
	if !s.unauthRate.Unlimited() {
		s.unauth = ratelimit.NewTable(n)
	}
	if !s.failRate.Unlimited() {
		s.fails = ratelimit.NewTable(n)
	}
	for i, r := range s.denyReasons {
		s.denyIndex[r] = i
	}
	s.creds.Store(creds)
	s.policy.Store(policy)
	s.nonceKey.Store(&key)
	return s, nil
}

// mono converts a time to the shared monotonic clock, in nanoseconds.
func (s *Shared) mono(now time.Time) int64 { return int64(now.Sub(s.epoch)) }

// SetCredentials swaps the credentials new Allocates are checked against
// (a reload). Live allocations keep the key they were granted with.
func (s *Shared) SetCredentials(c *auth.Snapshot) (old *auth.Snapshot) { return s.creds.Swap(c) }

// Credentials returns the credentials in force.
func (s *Shared) Credentials() *auth.Snapshot { return s.creds.Load() }

// SetPolicy swaps the peer address policy (ferry's own addresses changed).
func (s *Shared) SetPolicy(p *relay.Policy) { s.policy.Store(p) }

// Policy returns the peer policy in force.
func (s *Shared) Policy() *relay.Policy { return s.policy.Load() }

// SetNonceKey replaces the key nonces are signed with (a cluster shares
// it). Nonces signed with the old key get 438 and the client retries.
func (s *Shared) SetNonceKey(key []byte) {
	k := append([]byte(nil), key...)
	s.nonceKey.Store(&k)
}

// Drain stops granting allocations: Allocate gets 508 from now on. It
// cannot be undone.
func (s *Shared) Drain() { s.draining.Store(true) }

// Draining reports whether Drain was called.
func (s *Shared) Draining() bool { return s.draining.Load() }

// Allocations returns the number of live allocations.
func (s *Shared) Allocations() int { return int(s.total.Load()) }

// Stats sums every shard's counters, adding the bytes the data plane has
// counted so far on live RFC 6062 data connections.
func (s *Shared) Stats() Snapshot {
	out := Snapshot{PeerDenied: make(map[string]uint64, len(s.denyReasons))}
	s.mu.Lock()
	stats := append([]*Stats(nil), s.stats...)
	for t := range s.tcpLive {
		out.ToPeerPackets += t.ToPeerPackets.Load()
		out.ToPeerBytes += t.ToPeerBytes.Load()
		out.FromPeerPackets += t.FromPeerPackets.Load()
		out.FromPeerBytes += t.FromPeerBytes.Load()
	}
	s.mu.Unlock()
	for _, st := range stats {
		out.add(st, s.denyReasons)
	}
	out.Allocations = s.Allocations()
	return out
}

// PeerDenialReasons lists the reasons peers are refused with.
func (s *Shared) PeerDenialReasons() []string { return append([]string(nil), s.denyReasons...) }

func (s *Shared) register(st *Stats) {
	st.PeerDenied = make([]counter, len(s.denyReasons))
	s.mu.Lock()
	s.stats = append(s.stats, st)
	s.mu.Unlock()
}

// quotaRefusal says why acquire refused.
type quotaRefusal uint8

const (
	quotaOK quotaRefusal = iota
	quotaUser
	quotaTotal
)

// acquire counts an allocation for user against the quotas.
func (s *Shared) acquire(user string) (*userState, quotaRefusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[user]
	if u == nil {
		u = &userState{name: user}
		s.users[user] = u
	}
	if s.cfg.UserAllocations > 0 && u.allocs >= s.cfg.UserAllocations {
		return nil, quotaUser
	}
	if s.cfg.TotalAllocations > 0 && s.total.Load() >= int64(s.cfg.TotalAllocations) {
		return nil, quotaTotal
	}
	u.allocs++
	s.total.Add(1)
	return u, quotaOK
}

// release gives back what acquire counted.
func (s *Shared) release(u *userState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.allocs--
	s.total.Add(-1)
	if u.allocs == 0 && s.users[u.name] == u {
		delete(s.users, u.name)
	}
}

func (s *Shared) trackTCP(t *Traffic, live bool) {
	s.mu.Lock()
	if live {
		s.tcpLive[t] = struct{}{}
	} else {
		delete(s.tcpLive, t)
	}
	s.mu.Unlock()
}

// reserve records a RESERVATION-TOKEN for relay r and returns it.
func (s *Shared) reserve(r RelayID, addr netip.AddrPort, expires int64) [8]byte {
	var tok [8]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		_, _ = rand.Read(tok[:])
		if _, dup := s.reservations[tok]; !dup {
			break
		}
	}
	s.reservations[tok] = &reservation{relay: r, addr: addr, expires: expires}
	return tok
}

// takeReservation removes and returns a live reservation.
func (s *Shared) takeReservation(tok [8]byte, now int64) (*reservation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.reservations[tok]
	if !ok || r.expires <= now {
		return nil, false
	}
	delete(s.reservations, tok)
	return r, true
}

// expireReservations removes the expired reservations of shard's relays
// and returns their relays, appending to dst.
func (s *Shared) expireReservations(dst []RelayID, shard int, now int64) []RelayID {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, r := range s.reservations {
		if r.relay.Shard() == shard && r.expires <= now {
			delete(s.reservations, tok)
			dst = append(dst, r.relay)
		}
	}
	return dst
}

// dropReservations removes every reservation of shard (shutdown), returning
// their relays.
func (s *Shared) dropReservations(dst []RelayID, shard int) []RelayID {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, r := range s.reservations {
		if r.relay.Shard() == shard {
			delete(s.reservations, tok)
			dst = append(dst, r.relay)
		}
	}
	return dst
}

// allowLog takes one client-caused log line of kind k from the
// process-wide budget of that kind.
func (s *Shared) allowLog(k logKind, now int64) bool { return s.logs[k].Allow(s.logRate, now) }

// nextConnID returns an RFC 6062 CONNECTION-ID owned by shard: the shard in
// the top 8 bits, never 0.
func (s *Shared) nextConnID(shard int) uint32 {
	for {
		v := s.connSeq.Add(1) & (1<<24 - 1)
		if v != 0 {
			return uint32(shard)<<24 | v
		}
	}
}
