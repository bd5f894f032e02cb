package edge

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/bits"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/ferryrtc/ferry/internal/ratelimit"
)

const (
	// DefaultTrackedIPs is the default number of per-IP rate limit slots.
	DefaultTrackedIPs = 1 << 16
	// pionNonceLifetime is how long pion v5 accepts its nonces.
	pionNonceLifetime = time.Hour
)

// GuardOptions configures a Guard. Zero rates mean unlimited.
type GuardOptions struct {
	// AllocateRate and AllocateBurst limit, per client IP address (IPv6: per
	// /64), the requests that cost the server work before any credential
	// is checked: every Allocate, and every other request (except Binding)
	// that carries no MESSAGE-INTEGRITY, which pion answers with a 401
	// challenge. AllocateRate is per minute on average, AllocateBurst at
	// once. Requests over the limit are dropped without an answer and
	// counted: an answer would cost what the limit saves and, over UDP,
	// could be aimed at a spoofed source; honest clients retransmit.
	AllocateRate, AllocateBurst int
	// AuthFailureRate and AuthFailureBurst limit refused credentials per
	// client IP address (per minute, at once). Once an address has used
	// them up, its requests carrying MESSAGE-INTEGRITY are not verified
	// until the bucket refills: they get 401 from Options.Refuse (no larger
	// than the request, like any 401 to a credential) or are dropped
	// without it. Password guessing gets one verified guess per refill,
	// and an answer that says nothing, at no HMAC's cost; a client with a
	// wrong password still learns that it is refused.
	AuthFailureRate, AuthFailureBurst int
	// TrackedIPs is the number of per-IP slots of each limit; 0 means
	// DefaultTrackedIPs. Addresses beyond it evict each other (the evicted
	// one restarts with a full bucket).
	TrackedIPs int

	// NonceLifetime makes nonces older than this stale: a request carrying
	// one gets 438 (Stale Nonce) with a fresh nonce, and the client retries
	// at once. pion accepts its nonces for an hour; 0 keeps that. pion
	// stamps nonces with the minute they were issued, so a nonce is stale
	// between NonceLifetime and NonceLifetime plus a minute after issue.
	NonceLifetime time.Duration
	// BindNonces ties every nonce to the IP address it was sent to (see
	// Guard); a request from another address carrying it gets 438.
	BindNonces bool
	// Now is the wall clock nonce ages are measured on (pion's nonces carry
	// wall-clock minutes); nil means time.Now.
	Now func() time.Time
}

// Guard holds the abuse protections shared by every socket of a server:
// per-source-IP request limits, nonce expiry and nonce binding. Set it in
// Options.Guard for every wrapper of one server. It is safe for concurrent
// use; its per-packet work takes no lock and allocates nothing.
//
// Nonces are pion's (it validates them, with a key it keeps to itself), so
// ferry adds its rules without changing their value: pion's nonce is
// base36 and pion reads it case-insensitively, so when BindNonces is set
// the edge writes the letters of every NONCE it sends in a case pattern
// keyed (per process) by the client's IP address, and a request whose
// NONCE does not carry its sender's pattern is stale. MESSAGE-INTEGRITY
// covers NONCE, so a captured request cannot be replayed from another
// address, nor its nonce re-cased by anyone without the key. For a stale
// nonce the edge strips the request's MESSAGE-INTEGRITY, so pion answers
// with a fresh nonce in a 401 challenge, and turns that 401 into the 438 a
// client expects.
type Guard struct {
	allocRate, failRate ratelimit.Rate
	alloc, fail         *ratelimit.Table
	epoch               time.Time

	nonceMinutes int64 // 0: no ferry expiry
	bind         bool
	seed         maphash.Seed
	now          func() time.Time
}

// NewGuard checks o and returns a Guard.
func NewGuard(o GuardOptions) (*Guard, error) {
	for _, v := range []struct {
		name string
		n    int
	}{
		{"allocate rate", o.AllocateRate}, {"allocate burst", o.AllocateBurst},
		{"auth failure rate", o.AuthFailureRate}, {"auth failure burst", o.AuthFailureBurst},
		{"tracked IPs", o.TrackedIPs},
	} {
		if v.n < 0 {
			return nil, fmt.Errorf("edge: %s %d is negative", v.name, v.n)
		}
	}
	if o.NonceLifetime < 0 || (o.NonceLifetime > 0 && o.NonceLifetime < time.Minute) || o.NonceLifetime > pionNonceLifetime {
		return nil, fmt.Errorf("edge: nonce lifetime %s is out of range; use 1m to 1h", o.NonceLifetime)
	}
	n := o.TrackedIPs
	if n == 0 {
		n = DefaultTrackedIPs
	}
	g := &Guard{
		allocRate: ratelimit.NewRate(int64(o.AllocateRate), time.Minute, int64(o.AllocateBurst)),
		failRate:  ratelimit.NewRate(int64(o.AuthFailureRate), time.Minute, int64(o.AuthFailureBurst)),
		epoch:     time.Now(),
		bind:      o.BindNonces,
		seed:      maphash.MakeSeed(),
		now:       o.Now,
	}
	if !g.allocRate.Unlimited() {
		g.alloc = ratelimit.NewTable(n)
	}
	if !g.failRate.Unlimited() {
		g.fail = ratelimit.NewTable(n)
	}
	if o.NonceLifetime > 0 && o.NonceLifetime < pionNonceLifetime {
		g.nonceMinutes = int64(o.NonceLifetime / time.Minute)
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g, nil
}

// clock is the limiter clock: monotonic nanoseconds since NewGuard.
func (g *Guard) clock() int64 { return int64(time.Since(g.epoch)) }

// ipOf returns the IP address of a UDP or TCP address without allocating.
func ipOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// allowAttempt takes one costly request of ip from its bucket.
func (g *Guard) allowAttempt(ip netip.Addr) bool {
	if g == nil || g.alloc == nil || !ip.IsValid() {
		return true
	}
	return g.alloc.Bucket(ip).Take(g.allocRate, g.clock(), 1)
}

// authBlocked reports whether ip has used up its refused credentials.
func (g *Guard) authBlocked(ip netip.Addr) bool {
	if g == nil || g.fail == nil || !ip.IsValid() {
		return false
	}
	b := g.fail.Peek(ip)
	return b != nil && b.Empty(g.failRate, g.clock(), 1)
}

// authFailed records a refused credential of ip.
func (g *Guard) authFailed(ip netip.Addr) {
	if g == nil || g.fail == nil || !ip.IsValid() {
		return
	}
	g.fail.Bucket(ip).Take(g.failRate, g.clock(), 1)
}

// checksNonces reports whether requests' nonces need looking at.
func (g *Guard) checksNonces() bool { return g != nil && (g.bind || g.nonceMinutes > 0) }

// nonceVerdict is why a nonce is stale.
type nonceVerdict uint8

const (
	nonceOK nonceVerdict = iota
	nonceExpired
	nonceForeign // not sent to this address
)

// checkNonce judges the NONCE value of a request from ip.
func (g *Guard) checkNonce(nonce []byte, ip netip.Addr) nonceVerdict {
	if g.bind && ip.IsValid() && !g.caseMatches(nonce, ip) {
		return nonceForeign
	}
	if g.nonceMinutes > 0 {
		if issued, ok := pionNonceMinute(nonce); ok {
			age := g.now().Unix()/60 - issued
			if age > g.nonceMinutes || age < -1 {
				return nonceExpired
			}
		}
	}
	return nonceOK
}

// casePattern returns the case bits for nonce (any case) sent to ip: bit i
// set means the i-th letter is lower case.
func (g *Guard) casePattern(nonce []byte, ip netip.Addr) uint64 {
	var h maphash.Hash
	h.SetSeed(g.seed)
	a := ip.As16()
	_, _ = h.Write(a[:])
	for _, c := range nonce {
		_ = h.WriteByte(upper(c))
	}
	return h.Sum64()
}

// caseMatches reports whether nonce carries ip's case pattern.
func (g *Guard) caseMatches(nonce []byte, ip netip.Addr) bool {
	pat := g.casePattern(nonce, ip)
	k := 0
	for _, c := range nonce {
		if !isLetter(c) {
			continue
		}
		lower := c >= 'a'
		if lower != (pat>>(k%64)&1 == 1) {
			return false
		}
		k++
	}
	return true
}

// bindNonce writes ip's case pattern into nonce in place.
func (g *Guard) bindNonce(nonce []byte, ip netip.Addr) {
	pat := g.casePattern(nonce, ip)
	k := 0
	for i, c := range nonce {
		if !isLetter(c) {
			continue
		}
		if pat>>(k%64)&1 == 1 {
			nonce[i] = c | 0x20
		} else {
			nonce[i] = c &^ 0x20
		}
		k++
	}
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c &^ 0x20
	}
	return c
}

// pionNonceMinute decodes the issue minute (Unix minutes) from a pion v5
// nonce: base36 (any case) of 4 bytes of minutes and 12 of HMAC, leading
// zeros stripped (internal/server/short_nonce.go). It reports false for
// anything that is not 1 to 16 bytes of base36, leaving such nonces to
// pion.
func pionNonceMinute(nonce []byte) (int64, bool) {
	if len(nonce) == 0 || len(nonce) > 26 {
		return 0, false
	}
	var hi, lo uint64
	for _, c := range nonce {
		var d uint64
		switch c = upper(c); {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'A' && c <= 'Z':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		// (hi, lo) = (hi, lo) * 36 + d, failing on 128-bit overflow.
		h1, l1 := bits.Mul64(lo, 36)
		h2, l2 := bits.Mul64(hi, 36)
		if h2 != 0 {
			return 0, false
		}
		var c1, c2 uint64
		lo, c1 = bits.Add64(l1, d, 0)
		hi, c2 = bits.Add64(l2, h1, c1)
		if c2 != 0 {
			return 0, false
		}
	}
	return int64(hi >> 32), true
}

// staleRing remembers the transaction IDs of requests whose nonce was
// stale and whose MESSAGE-INTEGRITY was stripped, so that pion's 401
// answer to each goes out as 438. A few entries suffice: pion answers on
// the goroutine that read the request, before reading the next.
type staleRing struct {
	next atomic.Uint32
	ids  [8]atomic.Uint64
}

func tidKey(tid []byte) uint64 {
	return (binary.LittleEndian.Uint64(tid[0:8]) ^ uint64(binary.LittleEndian.Uint32(tid[8:12]))<<21) | 1
}

func (r *staleRing) add(tid []byte) {
	i := r.next.Add(1) % uint32(len(r.ids))
	r.ids[i].Store(tidKey(tid))
}

// take reports whether tid was added, forgetting it.
func (r *staleRing) take(tid []byte) bool {
	k := tidKey(tid)
	for i := range r.ids {
		if r.ids[i].Load() == k && r.ids[i].CompareAndSwap(k, 0) {
			return true
		}
	}
	return false
}

// lastRequest remembers the size and transaction ID of the last STUN
// request read from a UDP socket, so the answer pion writes to it (on the
// same goroutine, before the next read) can be held to that size.
type lastRequest struct {
	v atomic.Uint64 // tidKey with the low 16 bits replaced by the size
}

func (l *lastRequest) set(tid []byte, size int) {
	l.v.Store(tidKey(tid)&^0xFFFF | uint64(min(size, 0xFFFF)))
}

// size returns the size of the request with transaction ID tid, 0 if it is
// not the last one read.
func (l *lastRequest) size(tid []byte) int {
	v := l.v.Load()
	if v&^0xFFFF != tidKey(tid)&^0xFFFF {
		return 0
	}
	return int(v & 0xFFFF)
}
