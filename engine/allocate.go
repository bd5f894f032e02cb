package engine

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

// pendingAllocate is an Allocate waiting for its relay sockets.
type pendingAllocate struct {
	fingerprint bool
	reqLen      int
	pair        RelayID // reserved next port (EVEN-PORT R bit), 0 if none
	addrErr     uint8   // a family asked for with ADDITIONAL-ADDRESS-FAMILY that is not offered
	checking    bool    // the cluster's user quota answer is awaited (UserChecked)
}

// lifetime returns the lifetime to grant for a LIFETIME request value
// (RFC 8656 §7.2, §7.3): the default when absent or lower, capped at the
// maximum.
func (e *Engine) lifetime(m *stunwire.Message) uint32 {
	def := uint32(e.cfg.DefaultLifetime / time.Second)
	most := uint32(e.cfg.MaxLifetime / time.Second)
	v, ok := m.Uint32(stun.AttrLifetime)
	if !ok || v < def {
		return def
	}
	return min(v, most)
}

// offered reports whether relays of family f (4, 6) are offered.
func (e *Engine) offered(f uint8) bool {
	if f == 4 {
		return e.cfg.RelayV4
	}
	return e.cfg.RelayV6
}

// advertise returns the address a relay bound at bound is advertised as.
func (e *Engine) advertise(bound netip.AddrPort) netip.AddrPort {
	ext := e.cfg.External6
	if bound.Addr().Is4() {
		ext = e.cfg.External4
	}
	if ext.IsValid() {
		return netip.AddrPortFrom(ext, bound.Port())
	}
	return bound
}

// allocate handles an authenticated Allocate (RFC 8656 §7.2, RFC 6156,
// RFC 6062 §5.1).
func (e *Engine) allocate(out *Output, c *Client, m *stunwire.Message, r authResult, reqLen int) {
	key := r.key
	if a := r.a; a != nil {
		switch {
		case a.tid != m.TransactionID:
			e.fail(out, c, m, reqLen, 437, key)
		case a.pending == nil: // a retransmission: the same answer again
			e.allocateSuccess(out, a, m.HasFingerprint, reqLen)
		}
		return
	}
	refuse := func(code, why int) {
		e.stats.Refused[why].inc()
		e.fail(out, c, m, reqLen, code, key)
	}
	rt, ok := m.Get(stun.AttrRequestedTransport)
	if !ok || len(rt) != 4 {
		refuse(400, RefusedPolicy)
		return
	}
	tcp := false
	switch rt[0] {
	case stunwire.ProtoUDP:
	case stunwire.ProtoTCP:
		if !c.Transport.byteStream() {
			refuse(400, RefusedPolicy) // RFC 6062 §5.1: a TCP relay over UDP or DTLS
			return
		}
		tcp = true
	default:
		refuse(442, RefusedPolicy)
		return
	}
	// Allocation hints are honoured also after MESSAGE-INTEGRITY, where
	// pion's TURN client puts them: they shape only the requester's own
	// allocation.
	evenV, even := m.GetUnprotected(stun.AttrEvenPort)
	token, hasToken := m.Get(stun.AttrReservationToken)
	famV, hasFam := m.GetUnprotected(stun.AttrRequestedAddressFamily)
	addV, hasAdd := m.GetUnprotected(stunwire.AttrAdditionalAddressFamily)
	_, df := m.GetUnprotected(stun.AttrDontFragment)
	switch {
	case tcp && (even || hasToken || df),
		hasToken && (even || hasFam || hasAdd),
		hasFam && hasAdd,
		even && len(evenV) != 1,
		hasToken && len(token) != 8,
		hasAdd && (len(addV) != 4 || addV[0] != stunwire.FamilyIPv6):
		refuse(400, RefusedPolicy)
		return
	}
	var fams [2]uint8
	nf := 1
	var addrErr uint8
	switch {
	case hasAdd:
		fams[0] = 4
		if !e.offered(4) {
			refuse(440, RefusedPolicy)
			return
		}
		if e.offered(6) {
			fams[1], nf = 6, 2
		} else {
			addrErr = 6
		}
	case hasFam:
		if len(famV) != 4 || (famV[0] != stunwire.FamilyIPv4 && famV[0] != stunwire.FamilyIPv6) {
			refuse(440, RefusedPolicy)
			return
		}
		fams[0] = 4
		if famV[0] == stunwire.FamilyIPv6 {
			fams[0] = 6
		}
		if !e.offered(fams[0]) {
			refuse(440, RefusedPolicy)
			return
		}
	default:
		switch {
		case e.offered(4):
			fams[0] = 4
		case e.offered(6):
			fams[0] = 6
		default:
			refuse(440, RefusedPolicy)
			return
		}
	}
	if e.sh.Draining() {
		if alt, ok := e.alternate(c); ok {
			e.stats.Refused[RefusedRedirected].inc()
			e.tryAlternate(out, c, m, reqLen, key, alt)
			return
		}
		e.stats.Refused[RefusedDraining].inc()
		phrase := DrainingReason
		if reason(c, key != nil, 508) == "" { // an unsigned answer over UDP stays small
			phrase = ""
		}
		e.failWith(out, c, m, reqLen, 508, phrase, key)
		return
	}
	if e.sh.overBudgetUser(r.cred.User) {
		refuse(486, RefusedBudget)
		return
	}
	var res *reservation
	if hasToken {
		var tok [8]byte
		copy(tok[:], token)
		if res, ok = e.sh.takeReservation(tok, e.now); !ok {
			refuse(508, RefusedCapacity)
			return
		}
	}
	user, q := e.sh.acquire(r.cred.User)
	if q != quotaOK {
		if res != nil {
			e.releaseReservation(out, res)
		}
		switch alt, ok := e.alternate(c); {
		case q == quotaUser:
			refuse(486, RefusedQuota)
		case ok:
			e.stats.Refused[RefusedRedirected].inc()
			e.tryAlternate(out, c, m, reqLen, key, alt)
		default:
			refuse(508, RefusedCapacity)
		}
		return
	}
	e.nextAlloc++
	a := &allocation{
		id:        uint64(e.shard)<<56 | e.nextAlloc,
		client:    *c,
		key:       c.tuple(),
		username:  r.username,
		user:      user,
		quotaUser: r.cred.User,
		ltKey:     r.key,
		tid:       m.TransactionID,
		lifetime:  e.lifetime(m),
		tcp:       tcp,
		created:   time.Unix(e.wall, 0),
		heapIdx:   -1,
		pending:   &pendingAllocate{fingerprint: m.HasFingerprint, reqLen: reqLen, addrErr: addrErr},
	}
	e.allocs[a.key] = a
	if conn := e.conns[c.Socket]; conn != nil && c.Transport.Connected() {
		e.busyConn(conn, a)
	}
	if res != nil {
		id := res.relay
		if id.Shard() == e.shard {
			e.relays[id.Index()] = relaySlot{a: a, used: true}
		} else {
			id = e.newRelaySlot(a, false)
			out.add(Command{Op: OpAdoptRelay, Relay: id, Old: res.relay})
		}
		a.ends[0] = relayEnd{id: id, family: familyOf(res.addr.Addr()), bound: res.addr, adv: e.advertise(res.addr), open: true}
		a.nEnds = 1
		e.checkUser(out, a)
		e.maybeReady(out, a)
		return
	}
	for i := range nf {
		id := e.newRelaySlot(a, false)
		open := OpenRelay{Family: fams[i], TCP: tcp, DontFragment: df}
		if i == 0 && even {
			open.Even = true
			if evenV[0]&0x80 != 0 {
				open.Pair = e.newRelaySlot(nil, true)
				a.pending.pair = open.Pair
			}
		}
		a.ends[i] = relayEnd{id: id, family: fams[i]}
		out.add(Command{Op: OpOpenRelay, Relay: id, Open: open})
	}
	a.nEnds = nf
	e.checkUser(out, a)
}

// releaseReservation closes a reserved relay that an Allocate took but
// cannot use.
func (e *Engine) releaseReservation(out *Output, res *reservation) {
	if res.relay.Shard() == e.shard {
		e.freeRelaySlot(res.relay)
	}
	out.add(Command{Op: OpCloseRelay, Relay: res.relay})
}

// RelayOpened reports the outcome of OpOpenRelay: the address the relay
// socket is bound to, or the error that kept it from being bound (a busy
// port range, an address the host lacks). For a request with Pair, the
// pair socket is bound to the next port when err is nil.
func (e *Engine) RelayOpened(out *Output, id RelayID, bound netip.AddrPort, err error, now time.Time) {
	e.setTime(now)
	a := e.allocationOf(id)
	if a == nil || a.pending == nil {
		// The allocation ended while its socket was being bound.
		if i := id.Index(); id.Shard() == e.shard && i < len(e.relays) && e.relays[i].used && e.relays[i].a == nil && !e.relays[i].reserved {
			pair := e.relays[i].orphanPair
			e.freeRelaySlot(id)
			if pair != 0 {
				e.freeRelaySlot(pair)
			}
			if err == nil {
				out.add(Command{Op: OpCloseRelay, Relay: id})
				if pair != 0 {
					out.add(Command{Op: OpCloseRelay, Relay: pair})
				}
			}
		}
		return
	}
	end := a.endByID(id)
	if end == nil {
		return
	}
	if err != nil {
		end.failed = true
		e.logClient(logRelayNotBound,
			slog.String("client", a.client.Remote.String()),
			slog.String("user", a.username),
			slog.Int("family", int(end.family)),
			slog.String("err", err.Error()))
	} else {
		end.open, end.bound, end.adv = true, bound, e.advertise(bound)
	}
	e.maybeReady(out, a)
}

// maybeReady answers a pending Allocate once every relay socket is bound
// (or failed) and the cluster has answered its user quota check.
func (e *Engine) maybeReady(out *Output, a *allocation) {
	if a.pending.checking {
		return
	}
	for i := range a.ends[:a.nEnds] {
		if !a.ends[i].open && !a.ends[i].failed {
			return // another family is still being bound
		}
	}
	if a.ends[0].failed {
		p := a.pending
		if p.pair != 0 {
			e.freeRelaySlot(p.pair) // never bound: the even port failed
		}
		e.refusePending(out, a, RefusedCapacity, 508)
		return
	}
	e.allocationReady(out, a)
}

// refusePending ends a, an allocation not yet answered, and answers its
// Allocate with error code, counted as refused for why.
func (e *Engine) refusePending(out *Output, a *allocation, why, code int) {
	p := a.pending
	e.stats.Refused[why].inc()
	e.deleteAllocation(out, a, EndClient)
	var m stunwire.Message
	m.Type = stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	m.TransactionID = a.tid
	b := e.begin(out, &m, stun.ClassErrorResponse)
	b.AddErrorCode(code, reason(&a.client, true, code))
	e.send(out, &a.client, a.ltKey, p.fingerprint, p.reqLen)
}

// allocationReady makes a live once its relay sockets are open, answers
// the Allocate and starts its timers.
func (e *Engine) allocationReady(out *Output, a *allocation) {
	p := a.pending
	a.pending = nil
	for i := 1; i < a.nEnds; i++ {
		if a.ends[i].failed {
			e.freeRelaySlot(a.ends[i].id)
			a.ends[i] = relayEnd{}
			a.nEnds = i
			p.addrErr = 6
		}
	}
	var token [8]byte
	if p.pair != 0 {
		pair := netip.AddrPortFrom(a.ends[0].bound.Addr(), a.ends[0].bound.Port()+1)
		token = e.sh.reserve(p.pair, pair, e.now+int64(ReservationLifetime))
	}
	a.expires = e.now + int64(a.lifetime)*int64(time.Second)
	e.schedule(a)
	for i := range a.ends[:a.nEnds] {
		f := familyIndex(a.ends[i].family)
		e.stats.Created[a.client.Transport][f].inc()
		e.stats.Active[a.client.Transport][f].inc()
	}
	if a.tcp {
		e.sh.trackTCP(&a.traffic, true)
	}
	e.allocateSuccessWith(out, a, p.fingerprint, p.reqLen, token, p.pair != 0, p.addrErr)
	e.log.LogAttrs(context.Background(), slog.LevelInfo, "allocation created",
		slog.String("client", a.client.Remote.String()),
		slog.String("listener", a.client.Local.String()),
		slog.String("transport", a.client.Transport.String()),
		slog.String("user", a.username),
		slog.String("relay", a.ends[0].adv.String()),
		slog.Bool("tcp_relay", a.tcp),
		slog.Int("lifetime_s", int(a.lifetime)))
}

// allocateSuccess answers a retransmitted Allocate of a live allocation.
func (e *Engine) allocateSuccess(out *Output, a *allocation, fp bool, reqLen int) {
	e.allocateSuccessWith(out, a, fp, reqLen, [8]byte{}, false, 0)
}

func (e *Engine) allocateSuccessWith(out *Output, a *allocation, fp bool, reqLen int, token [8]byte, hasToken bool, addrErr uint8) {
	var m stunwire.Message
	m.Type = stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	m.TransactionID = a.tid
	b := e.begin(out, &m, stun.ClassSuccessResponse)
	for i := range a.ends[:a.nEnds] {
		b.AddXOR(stun.AttrXORRelayedAddress, a.ends[i].adv)
	}
	if addrErr != 0 {
		b.AddAddressErrorCode(stunwire.FamilyIPv6, 440, "Address Family not Supported")
	}
	b.AddXOR(stun.AttrXORMappedAddress, a.client.Remote)
	b.AddUint32(stun.AttrLifetime, a.lifetime)
	if hasToken {
		b.Add(stun.AttrReservationToken, token[:])
	}
	b.AddSoftware(e.cfg.Software)
	e.send(out, &a.client, a.ltKey, fp, reqLen)
}
