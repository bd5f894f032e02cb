package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"net/netip"
	"sync/atomic"
)

// MaxSlots bounds a Table's size.
const MaxSlots = 1 << 24

// Table is a fixed number of buckets keyed by client address: an IPv4
// address, or the /64 of an IPv6 address (one subscriber usually holds a
// whole /64). Each address hashes, with a per-table random seed, to one
// slot; a different address landing on a taken slot takes it over with a
// full bucket. Memory is therefore bounded whatever the number of sources,
// and a flood of spoofed sources can only make the limits more lenient for
// the addresses it evicts, never lock an honest client out. Lookups do not
// lock or allocate.
type Table struct {
	seed  maphash.Seed
	mask  uint64
	slots []slot
}

type slot struct {
	key atomic.Uint64 // address hash | 1; 0: free
	b   Bucket
}

// NewTable returns a table of at least n slots (a power of two, at most
// MaxSlots, at least 1).
func NewTable(n int) *Table {
	n = min(max(n, 1), MaxSlots)
	size := 1 << bits.Len(uint(n-1))
	return &Table{seed: maphash.MakeSeed(), mask: uint64(size - 1), slots: make([]slot, size)}
}

// Len returns the number of slots.
func (t *Table) Len() int { return len(t.slots) }

// Bucket returns ip's bucket, taking the slot over if another address
// holds it.
func (t *Table) Bucket(ip netip.Addr) *Bucket {
	h := t.hash(ip) | 1
	s := &t.slots[h&t.mask]
	if s.key.Load() != h {
		s.key.Store(h)
		s.b.tat.Store(0)
	}
	return &s.b
}

// Peek returns ip's bucket if ip holds its slot, else nil.
func (t *Table) Peek(ip netip.Addr) *Bucket {
	h := t.hash(ip) | 1
	s := &t.slots[h&t.mask]
	if s.key.Load() != h {
		return nil
	}
	return &s.b
}

// hash hashes the address (IPv4, IPv4-mapped as IPv4, IPv6 by /64).
func (t *Table) hash(ip netip.Addr) uint64 {
	var b [9]byte
	return maphash.Bytes(t.seed, addrKey(&b, ip))
}

// BucketFor returns the bucket of ip together with a name (a user name
// guessed from that address), taking the slot over if another key holds
// it. name is hashed, not kept.
func (t *Table) BucketFor(ip netip.Addr, name []byte) *Bucket {
	var h maphash.Hash
	h.SetSeed(t.seed)
	var b [9]byte
	_, _ = h.Write(addrKey(&b, ip))
	_, _ = h.Write(name)
	k := h.Sum64() | 1
	s := &t.slots[k&t.mask]
	if s.key.Load() != k {
		s.key.Store(k)
		s.b.tat.Store(0)
	}
	return &s.b
}

// addrKey writes the bytes an address is keyed by into b: IPv4 (and
// IPv4-mapped) as IPv4, IPv6 by its /64.
func addrKey(b *[9]byte, ip netip.Addr) []byte {
	if ip = ip.Unmap(); ip.Is4() {
		a := ip.As4()
		copy(b[:4], a[:])
		b[8] = 4
	} else {
		a := ip.As16()
		copy(b[:8], a[:8])
		b[8] = 6
	}
	return b[:]
}
