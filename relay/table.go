package relay

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// u128 is an address as a number: IPv4 addresses use the low 32 bits, IPv6
// addresses all 128. The two families live in separate tables.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) inc() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func (a u128) dec() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

var maxU128 = u128{^uint64(0), ^uint64(0)}

// key4 and key6 turn an address of the matching family into a table key;
// they do not allocate.
func key4(a netip.Addr) u128 {
	b := a.As4()
	return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
}

func key6(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// hostMask returns the mask of the host bits of a prefix of the given length
// within an address of width bits (32 or 128).
func hostMask(bits, width int) u128 {
	h := width - bits // host bits, 0..128
	switch {
	case h == 0:
		return u128{}
	case h < 64:
		return u128{0, 1<<uint(h) - 1}
	case h == 64:
		return u128{0, ^uint64(0)}
	case h < 128:
		return u128{1<<uint(h-64) - 1, ^uint64(0)}
	default:
		return maxU128
	}
}

// prefixRange returns the first and last key of a valid prefix.
func prefixRange(p netip.Prefix) (lo, hi u128) {
	p = p.Masked()
	if p.Addr().Is4() {
		lo = key4(p.Addr())
		m := hostMask(p.Bits(), 32)
		return lo, u128{0, lo.lo | m.lo}
	}
	lo = key6(p.Addr())
	m := hostMask(p.Bits(), 128)
	return lo, u128{lo.hi | m.hi, lo.lo | m.lo}
}

// interval is one disjoint run of addresses sharing a verdict.
type interval struct {
	lo, hi u128
	val    reason
}

// table is a sorted list of disjoint intervals, searched by bisection. It is
// built once and only read afterwards, so lookups need no lock.
type table []interval

// tableEntry is one prefix with the verdict for the addresses it covers.
type tableEntry struct {
	prefix netip.Prefix
	val    reason
}

// buildTable flattens prefixes of one family into disjoint intervals where
// every address gets the value of the most specific prefix containing it (a
// later duplicate wins). CIDR prefixes either nest or are disjoint, so one
// sweep over the prefixes sorted by start (outer before inner) with a stack
// of the open ones is enough.
func buildTable(entries []tableEntry) table {
	type span struct {
		lo, hi u128
		bits   int
		val    reason
		seq    int
	}
	spans := make([]span, 0, len(entries))
	for i, e := range entries {
		lo, hi := prefixRange(e.prefix)
		spans = append(spans, span{lo, hi, e.prefix.Bits(), e.val, i})
	}
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		if c := cmp.Compare(a.bits, b.bits); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})

	var out table
	emit := func(lo, hi u128, v reason) {
		if n := len(out); n > 0 && out[n-1].val == v && out[n-1].hi.inc() == lo {
			out[n-1].hi = hi
			return
		}
		out = append(out, interval{lo, hi, v})
	}
	var stack []span
	var pos u128 // first address not yet emitted inside the open spans
	done := false
	// closeTop emits the rest of the innermost open span and pops it.
	closeTop := func() {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if done {
			return
		}
		if !top.hi.less(pos) {
			emit(pos, top.hi, top.val)
		}
		if top.hi == maxU128 {
			done = true // every enclosing span ends here too
			return
		}
		if pos.less(top.hi.inc()) {
			pos = top.hi.inc()
		}
	}
	for _, s := range spans {
		for len(stack) > 0 && stack[len(stack)-1].hi.less(s.lo) {
			closeTop()
		}
		if len(stack) > 0 && pos.less(s.lo) {
			emit(pos, s.lo.dec(), stack[len(stack)-1].val)
		}
		pos = s.lo
		stack = append(stack, s)
	}
	for len(stack) > 0 {
		closeTop()
	}
	return slices.Clip(out)
}

// lookup returns the value of the interval containing k, or reasonNone.
func (t table) lookup(k u128) reason {
	// Find the number of intervals starting at or before k.
	i, j := 0, len(t)
	for i < j {
		h := int(uint(i+j) >> 1)
		if !k.less(t[h].lo) {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == 0 || t[i-1].hi.less(k) {
		return reasonNone
	}
	return t[i-1].val
}
