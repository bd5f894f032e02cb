package engine

import (
	"container/heap"
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ferryrtc/ferry/internal/ratelimit"
)

// allocation is one client's relay (RFC 8656 §2.2): one or two relay
// sockets (one per address family), permissions and channels.
type allocation struct {
	id       uint64
	client   Client
	key      tuple
	username string
	user     *userState
	// quotaUser is user's name, kept after user is released at the end.
	quotaUser string
	// clusterCounted: the cluster counted it against its user's quota
	// (UserChecked), so its end must be taken off there.
	clusterCounted bool
	ltKey          []byte   // the long-term key granted at Allocate: later requests are checked with it
	tid            [12]byte // the Allocate's, to answer retransmissions
	lifetime       uint32   // seconds granted by the last Allocate or Refresh
	tcp            bool
	ends           [2]relayEnd
	nEnds          int
	pending        *pendingAllocate // not nil until every relay socket is open
	expires        int64
	perms          []permission
	chans          []channel
	traffic        Traffic
	bw             [2]ratelimit.Bucket // to peer, from peer
	created        time.Time
	heapIdx        int
	deadline       int64
	peers          []uint32 // RFC 6062 peer connections
	shaper         *Shaper  // RFC 6062 data connections' pacing, made on first use
	// awaiting counts the fast path entries removed at its end whose last
	// counts the data plane has yet to report; endWhy is the end's reason,
	// logged once they are in.
	awaiting int
	endWhy   int
}

// relayEnd is one relay socket of an allocation.
type relayEnd struct {
	id     RelayID
	family uint8 // 4 or 6
	bound  netip.AddrPort
	adv    netip.AddrPort // advertised in XOR-RELAYED-ADDRESS
	open   bool
	failed bool
}

// permission lets one peer IP address send to and receive from the relay.
type permission struct {
	ip      netip.Addr
	expires int64
}

// channel binds a channel number to a peer transport address.
type channel struct {
	number  uint16
	peer    netip.AddrPort
	expires int64 // the binding's; it is kept channelRebindGuard longer
	active  bool  // counted in ChannelsActive

	offloaded bool // installed in the kernel fast path
}

func familyOf(a netip.Addr) uint8 {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

func familyIndex(f uint8) int {
	if f == 4 {
		return 0
	}
	return 1
}

// end returns the relay socket of the allocation for family f.
func (a *allocation) end(f uint8) *relayEnd {
	for i := range a.ends[:a.nEnds] {
		if a.ends[i].family == f && a.ends[i].open {
			return &a.ends[i]
		}
	}
	return nil
}

// endByID returns the relay socket with id r.
func (a *allocation) endByID(r RelayID) *relayEnd {
	for i := range a.ends[:a.nEnds] {
		if a.ends[i].id == r {
			return &a.ends[i]
		}
	}
	return nil
}

// permitted reports whether ip has a live permission.
func (a *allocation) permitted(ip netip.Addr, now int64) bool {
	for i := range a.perms {
		if a.perms[i].ip == ip {
			return a.perms[i].expires > now
		}
	}
	return false
}

// livePermissions counts the permissions in force.
func (a *allocation) livePermissions(now int64) int {
	n := 0
	for i := range a.perms {
		if a.perms[i].expires > now {
			n++
		}
	}
	return n
}

// channelByNumber returns the live binding of number.
func (a *allocation) channelByNumber(number uint16, now int64) *channel {
	for i := range a.chans {
		if a.chans[i].number == number {
			if a.chans[i].expires > now {
				return &a.chans[i]
			}
			return nil
		}
	}
	return nil
}

// channelByPeer returns the live binding of peer.
func (a *allocation) channelByPeer(peer netip.AddrPort, now int64) *channel {
	for i := range a.chans {
		if a.chans[i].peer == peer {
			if a.chans[i].expires > now {
				return &a.chans[i]
			}
			return nil
		}
	}
	return nil
}

// live reports whether a is serving at now: open and not expired (its
// timer may not have run yet).
func (a *allocation) live(now int64) bool { return a.pending == nil && a.expires > now }

// lookup returns the allocation of c's 5-tuple. One whose lifetime ran out
// before its timer ran is deleted now, as expired.
func (e *Engine) lookup(out *Output, c *Client) *allocation {
	a := e.allocs[c.tuple()]
	if a != nil && a.pending == nil && a.expires <= e.now {
		e.deleteAllocation(out, a, EndExpired)
		return nil
	}
	return a
}

// nextDeadline is when the allocation next needs a sweep.
func (a *allocation) nextDeadline() int64 {
	d := a.expires
	for i := range a.perms {
		d = min(d, a.perms[i].expires)
	}
	for i := range a.chans {
		d = min(d, a.chans[i].expires+int64(channelRebindGuard))
	}
	return d
}

// timerHeap orders allocations by deadline.
type timerHeap []*allocation

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *timerHeap) Push(x any) {
	a := x.(*allocation)
	a.heapIdx = len(*h)
	*h = append(*h, a)
}
func (h *timerHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	a.heapIdx = -1
	return a
}

// schedule (re)places a in the timer heap at its next deadline.
func (e *Engine) schedule(a *allocation) {
	a.deadline = a.nextDeadline()
	if a.heapIdx >= 0 {
		heap.Fix(&e.timers, a.heapIdx)
		return
	}
	heap.Push(&e.timers, a)
}

// sweep removes what has expired of a; a itself when its lifetime is over.
func (e *Engine) sweep(out *Output, a *allocation) {
	if a.expires <= e.now {
		e.deleteAllocation(out, a, EndExpired)
		return
	}
	perms := a.perms[:0]
	for _, p := range a.perms {
		if p.expires > e.now {
			perms = append(perms, p)
		} else {
			e.stats.PermissionsActive.dec()
		}
	}
	clear(a.perms[len(perms):])
	a.perms = perms
	chans := a.chans[:0]
	for _, ch := range a.chans {
		if ch.offloaded && (ch.expires <= e.now || !a.permitted(ch.peer.Addr(), e.now)) {
			e.unoffload(out, a, &ch)
		}
		if ch.active && ch.expires <= e.now {
			ch.active = false
			e.stats.ChannelsActive.dec()
		}
		if ch.expires+int64(channelRebindGuard) > e.now {
			chans = append(chans, ch) // its number stays held for the guard time
		}
	}
	clear(a.chans[len(chans):])
	a.chans = chans
	e.schedule(a)
}

// newRelaySlot takes a free relay index of this shard for a.
func (e *Engine) newRelaySlot(a *allocation, reserved bool) RelayID {
	var i int
	if n := len(e.freeRelay); n > 0 {
		i = e.freeRelay[n-1]
		e.freeRelay = e.freeRelay[:n-1]
	} else {
		i = len(e.relays)
		e.relays = append(e.relays, relaySlot{})
	}
	e.relays[i] = relaySlot{a: a, reserved: reserved, used: true}
	return relayID(e.shard, i)
}

// freeRelaySlot returns a relay index of this shard to the free list.
func (e *Engine) freeRelaySlot(r RelayID) {
	i := r.Index()
	if r.Shard() != e.shard || i >= len(e.relays) || !e.relays[i].used {
		return
	}
	e.relays[i] = relaySlot{}
	e.freeRelay = append(e.freeRelay, i)
}

// RelayAdopted tells the shard that owned a reserved relay socket that the
// data plane moved it to another shard (OpAdoptRelay): its index is free.
func (e *Engine) RelayAdopted(r RelayID) { e.freeRelaySlot(r) }

// allocationOf returns the allocation relay r belongs to.
func (e *Engine) allocationOf(r RelayID) *allocation {
	i := r.Index()
	if r.Shard() != e.shard || i >= len(e.relays) {
		return nil
	}
	return e.relays[i].a
}

// deleteAllocation ends a: its relay sockets and peer connections are
// closed, its quotas given back, and the end logged and counted.
func (e *Engine) deleteAllocation(out *Output, a *allocation, why int) {
	if e.allocs[a.key] == a {
		delete(e.allocs, a.key)
	}
	delete(e.checking, a.id)
	if a.clusterCounted {
		a.clusterCounted = false
		out.add(Command{Op: OpReleaseUser, User: a.quotaUser})
	}
	if a.heapIdx >= 0 {
		heap.Remove(&e.timers, a.heapIdx)
	}
	for i := range a.ends[:a.nEnds] {
		end := &a.ends[i]
		switch {
		case end.open:
			e.freeRelaySlot(end.id)
			out.add(Command{Op: OpCloseRelay, Relay: end.id})
		case end.failed:
			e.freeRelaySlot(end.id)
		case end.id != 0:
			// Still being bound: RelayOpened will find no allocation and
			// close what was bound.
			var pair RelayID
			if i == 0 && a.pending != nil {
				pair = a.pending.pair
			}
			e.relays[end.id.Index()] = relaySlot{used: true, orphanPair: pair}
		}
	}
	for _, id := range a.peers {
		if p := e.peers[id]; p != nil {
			delete(e.peers, id)
			out.add(Command{Op: OpClosePeer, Conn: id})
		}
	}
	a.peers = nil
	live := a.pending == nil
	if a.user != nil {
		e.sh.release(a.user)
		a.user = nil
	}
	if c := e.conns[a.client.Socket]; c != nil && a.client.Transport.Connected() && c.alloc == a {
		c.alloc = nil
		e.idleConn(c)
	}
	if !live {
		return
	}
	for range a.perms {
		e.stats.PermissionsActive.dec() // the list holds only those not yet counted down
	}
	for i := range a.chans {
		ch := &a.chans[i]
		if ch.offloaded {
			a.awaiting++
		}
		e.unoffload(out, a, ch)
		if ch.active {
			e.stats.ChannelsActive.dec()
		}
	}
	if a.tcp {
		e.stats.tcpEnded.ToPeerPackets.Add(a.traffic.ToPeerPackets.Load())
		e.stats.tcpEnded.ToPeerBytes.Add(a.traffic.ToPeerBytes.Load())
		e.stats.tcpEnded.FromPeerPackets.Add(a.traffic.FromPeerPackets.Load())
		e.stats.tcpEnded.FromPeerBytes.Add(a.traffic.FromPeerBytes.Load())
		e.sh.trackTCP(&a.traffic, false)
	}
	for i := range a.ends[:a.nEnds] {
		if a.ends[i].open {
			e.stats.Active[a.client.Transport][familyIndex(a.ends[i].family)].dec()
		}
	}
	e.stats.Ended[why].inc()
	if a.awaiting > 0 {
		// Logged with the kernel's last counts (OffloadTraffic).
		a.endWhy = why
		e.ending[a.id] = a
		return
	}
	e.logEnd(out, a, why)
}

// logEnd logs the end of a with its traffic and reports its usage record.
func (e *Engine) logEnd(out *Output, a *allocation, why int) {
	if a.pending == nil {
		info := e.info(a)
		info.Ended, info.EndReason = time.Unix(e.wall, 0).UTC(), EndReasons()[why]
		out.add(Command{Op: OpEnded, Ended: &info})
	}
	e.log.LogAttrs(context.Background(), slog.LevelInfo, "allocation deleted",
		slog.String("client", a.client.Remote.String()),
		slog.String("transport", a.client.Transport.String()),
		slog.String("user", a.username),
		slog.String("relay", a.ends[0].adv.String()),
		slog.String("reason", EndReasons()[why]),
		slog.Uint64("packets_to_peer", a.traffic.ToPeerPackets.Load()),
		slog.Uint64("packets_from_peer", a.traffic.FromPeerPackets.Load()),
	)
}
