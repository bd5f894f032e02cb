package engine

import (
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/ratelimit"
	"github.com/ferryrtc/ferry/internal/stunwire"
)

// RFC 6062 TCP relays: peer connections opened by Connect or accepted on
// the relay's listener wait for the client's ConnectionBind on a new
// connection, after which the data plane copies bytes between the two.

type peerState uint8

const (
	peerConnecting  peerState = iota // OpConnectPeer issued
	peerWaitingBind                  // connected, waiting for ConnectionBind
	peerBound                        // joined to a client data connection
)

// peerConn is one peer TCP connection of an allocation.
type peerConn struct {
	id      uint32
	a       *allocation
	peer    netip.AddrPort
	state   peerState
	expires int64
	// The Connect request to answer when the dial ends; zero for accepted
	// connections.
	tid     [12]byte
	fp      bool
	reqLen  int
	connect bool
}

// Shaper paces an RFC 6062 data connection's bytes against its
// allocation's and its user's bandwidth caps. It is safe for concurrent
// use.
type Shaper struct {
	sh    *Shared
	alloc *[2]ratelimit.Bucket
	user  *userState
}

// Delay reserves n bytes in one direction at now and returns how long the
// caller must wait before sending them (0 without caps).
func (s *Shaper) Delay(toPeer bool, n int, now time.Time) time.Duration {
	if s == nil {
		return 0
	}
	dir := 1
	if toPeer {
		dir = 0
	}
	t := s.sh.mono(now)
	d := s.alloc[dir].Reserve(s.sh.bwAlloc, t, int64(n))
	if s.user != nil {
		d = max(d, s.user.bw[dir].Reserve(s.sh.bwUser, t, int64(n)))
	}
	return d
}

// connect handles Connect (RFC 6062 §5.2).
func (e *Engine) connect(out *Output, c *Client, m *stunwire.Message, r authResult, reqLen int) {
	a := r.a
	if a == nil || a.pending != nil {
		e.fail(out, c, m, reqLen, 437, r.key)
		return
	}
	peer, present, ok := m.GetXORAddress(stun.AttrXORPeerAddress)
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	code := 0
	switch {
	case !a.tcp || !present || !ok || peer.Port() == 0:
		code = 400
	default:
		code = e.checkPeer(c, a, peer, true)
	}
	if code == 0 {
		for _, id := range a.peers {
			if p := e.peers[id]; p != nil && p.peer == peer {
				code = 446
			}
		}
	}
	if code != 0 {
		e.fail(out, c, m, reqLen, code, r.key)
		return
	}
	id := e.sh.nextConnID(e.shard)
	e.peers[id] = &peerConn{id: id, a: a, peer: peer, state: peerConnecting,
		expires: e.now + int64(ConnectionBindTimeout), tid: m.TransactionID,
		fp: m.HasFingerprint, reqLen: reqLen, connect: true}
	a.peers = append(a.peers, id)
	out.add(Command{Op: OpConnectPeer, Relay: a.end(familyOf(peer.Addr())).id, Peer: peer, Conn: id})
}

// PeerConnected reports the end of OpConnectPeer: err is nil when the peer
// accepted the connection.
func (e *Engine) PeerConnected(out *Output, id uint32, err error, now time.Time) {
	e.setTime(now)
	p := e.peers[id]
	if p == nil || p.state != peerConnecting {
		out.add(Command{Op: OpClosePeer, Conn: id})
		return
	}
	a := p.a
	var m stunwire.Message
	m.Type = stun.NewType(stun.MethodConnect, stun.ClassRequest)
	m.TransactionID = p.tid
	if err != nil {
		e.forgetPeer(id)
		b := e.begin(out, &m, stun.ClassErrorResponse)
		b.AddErrorCode(447, reason(&a.client, true, 447))
		e.send(out, &a.client, a.ltKey, p.fp, p.reqLen)
		return
	}
	p.state = peerWaitingBind
	p.expires = e.now + int64(ConnectionBindTimeout)
	b := e.begin(out, &m, stun.ClassSuccessResponse)
	b.AddUint32(stun.AttrConnectionID, id)
	e.send(out, &a.client, a.ltKey, p.fp, p.reqLen)
}

// PeerAccepted reports a connection from peer accepted on the TCP relay
// listener r. It returns the CONNECTION-ID to keep it under, or false when
// the allocation has no permission for the peer: close it then.
func (e *Engine) PeerAccepted(out *Output, r RelayID, peer netip.AddrPort, now time.Time) (uint32, bool) {
	e.setTime(now)
	a := e.allocationOf(r)
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if a == nil || !a.tcp || !a.live(e.now) || !a.permitted(peer.Addr(), e.now) || !e.sh.policy.Load().PortAllowed(peer) {
		e.stats.Dropped[DropPolicy].inc()
		return 0, false
	}
	id := e.sh.nextConnID(e.shard)
	e.peers[id] = &peerConn{id: id, a: a, peer: peer, state: peerWaitingBind, expires: e.now + int64(ConnectionBindTimeout)}
	a.peers = append(a.peers, id)
	// ConnectionAttempt indication (RFC 6062 §5.3).
	var m stunwire.Message
	m.Type = stun.NewType(stun.MethodConnectionAttempt, stun.ClassRequest)
	e.tid++
	putTID(&m.TransactionID, e.tid, e.shard)
	b := e.begin(out, &m, stun.ClassIndication)
	b.AddUint32(stun.AttrConnectionID, id)
	b.AddXOR(stun.AttrXORPeerAddress, peer)
	e.send(out, &a.client, nil, false, 0)
	return id, true
}

func putTID(t *[12]byte, seq uint64, shard int) {
	for i := range 8 {
		t[i] = byte(seq >> (8 * i))
	}
	t[8] = byte(shard)
}

// connectionBind handles ConnectionBind on a new client connection (RFC
// 6062 §5.4): the connection then carries the peer connection's bytes.
func (e *Engine) connectionBind(out *Output, c *Client, m *stunwire.Message, r authResult, reqLen int) {
	p := r.peer
	if p == nil || p.state != peerWaitingBind || e.allocs[c.tuple()] != nil {
		e.fail(out, c, m, reqLen, 400, r.key)
		return
	}
	a := p.a
	p.state = peerBound
	e.begin(out, m, stun.ClassSuccessResponse)
	e.send(out, c, r.key, m.HasFingerprint, reqLen)
	if a.shaper == nil && (!e.sh.bwAlloc.Unlimited() || !e.sh.bwUser.Unlimited()) {
		a.shaper = &Shaper{sh: e.sh, alloc: &a.bw, user: a.user}
	}
	out.add(Command{Op: OpJoin, Client: *c, Conn: p.id, Join: &Join{Traffic: &a.traffic, Shaper: a.shaper}})
	e.forgetConn(c.Socket)
}

// PeerClosed reports that peer connection id ended (its peer or its client
// data connection closed, or a copy failed).
func (e *Engine) PeerClosed(id uint32, now time.Time) {
	e.setTime(now)
	e.forgetPeer(id)
}

// forgetPeer removes peer connection id from the engine.
func (e *Engine) forgetPeer(id uint32) {
	p := e.peers[id]
	if p == nil {
		return
	}
	delete(e.peers, id)
	a := p.a
	for i, x := range a.peers {
		if x == id {
			a.peers = append(a.peers[:i], a.peers[i+1:]...)
			break
		}
	}
}

// expirePeers closes peer connections that waited too long for their
// ConnectionBind (or their dial).
func (e *Engine) expirePeers(out *Output) {
	for id, p := range e.peers {
		if p.state != peerBound && p.expires <= e.now {
			e.forgetPeer(id)
			out.add(Command{Op: OpClosePeer, Conn: id})
		}
	}
}

// reroute hands a connection and its frame to the shard that owns what
// the frame refers to.
func (e *Engine) reroute(out *Output, c *Client, frame []byte, shard int) {
	e.forgetConn(c.Socket)
	out.add(Command{Op: OpReroute, Client: *c, Shard: shard, Data: frame})
}
