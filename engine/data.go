package engine

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

// Per-packet paths: nothing here allocates, locks or logs.

// allowBandwidth takes n bytes in one direction (0: to the peer, 1: from
// it) from a's and its user's buckets.
func (e *Engine) allowBandwidth(a *allocation, dir int, n int) bool {
	sh := e.sh
	if sh.bwAlloc.Unlimited() && sh.bwUser.Unlimited() {
		return true
	}
	if !a.bw[dir].Take(sh.bwAlloc, e.now, int64(n)) {
		e.stats.Dropped[DropBandwidth].inc()
		return false
	}
	if a.user != nil && !a.user.bw[dir].Take(sh.bwUser, e.now, int64(n)) {
		a.bw[dir].Refund(sh.bwAlloc, int64(n))
		e.stats.Dropped[DropBandwidth].inc()
		return false
	}
	return true
}

// toPeer queues data from a to peer over the relay of peer's family, if
// the policy lets it through.
func (e *Engine) toPeer(out *Output, a *allocation, peer netip.AddrPort, data []byte) {
	end := a.end(familyOf(peer.Addr()))
	if end == nil || !a.permitted(peer.Addr(), e.now) || !e.sh.policy.Load().PortAllowed(peer) {
		e.stats.Dropped[DropPolicy].inc()
		return
	}
	if !e.allowBandwidth(a, 0, len(data)) {
		return
	}
	a.traffic.count(true, len(data))
	e.stats.ToPeerPackets.inc()
	e.stats.ToPeerBytes.add(uint64(len(data)))
	out.add(Command{Op: OpSendPeer, Relay: end.id, Peer: peer, Data: data})
}

// channelDataFromClient relays a ChannelData message to its channel's peer
// (RFC 8656 §12.4).
func (e *Engine) channelDataFromClient(out *Output, c *Client, pkt []byte) {
	number, data, ok := stunwire.ChannelData(pkt)
	if !ok {
		e.stats.Dropped[DropMalformed].inc()
		return
	}
	a := e.allocs[c.tuple()]
	if a == nil || !a.live(e.now) {
		e.stats.Dropped[DropPolicy].inc()
		return
	}
	ch := a.channelByNumber(number, e.now)
	if ch == nil {
		e.stats.Dropped[DropPolicy].inc()
		return
	}
	e.toPeer(out, a, ch.peer, data)
}

// sendIndication relays the DATA of a Send indication (RFC 8656 §10.2).
func (e *Engine) sendIndication(out *Output, c *Client, m *stunwire.Message) {
	a := e.allocs[c.tuple()]
	if a == nil || !a.live(e.now) || a.tcp {
		e.stats.Dropped[DropPolicy].inc()
		return
	}
	peer, _, ok := m.GetXORAddress(stun.AttrXORPeerAddress)
	data, hasData := m.Get(stun.AttrData)
	if !ok || !hasData {
		e.stats.Dropped[DropMalformed].inc()
		return
	}
	e.toPeer(out, a, netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()), data)
}

// HandlePeer takes a datagram read from UDP relay socket r, sent by peer.
// buf holds Headroom bytes, the n bytes of the datagram, then at least
// Tailroom bytes: the engine writes the ChannelData header or the Data
// indication around the datagram in place, and the command it yields
// points into buf.
func (e *Engine) HandlePeer(out *Output, r RelayID, peer netip.AddrPort, buf []byte, n int, now time.Time) {
	e.setTime(now)
	a := e.allocationOf(r)
	if a == nil || !a.live(e.now) || len(buf) < Headroom+n+Tailroom {
		e.stats.Dropped[DropPolicy].inc()
		return
	}
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if !a.permitted(peer.Addr(), e.now) || !e.sh.policy.Load().PortAllowed(peer) {
		e.stats.Dropped[DropPolicy].inc()
		return
	}
	if n > 0xFFFF-stunwire.HeaderSize-48 {
		e.stats.Dropped[DropOversized].inc()
		return
	}
	if !e.allowBandwidth(a, 1, n) {
		return
	}
	a.traffic.count(false, n)
	e.stats.FromPeerPackets.inc()
	e.stats.FromPeerBytes.add(uint64(n))
	var msg []byte
	if ch := a.channelByPeer(peer, e.now); ch != nil {
		start := Headroom - stunwire.ChannelHeaderSize
		stunwire.PutChannelHeader(buf[start:], ch.number, n)
		end := Headroom + n
		if a.client.Transport.Connected() { // padded: pion's clients frame DTLS like TCP
			for end%4 != 0 {
				buf[end] = 0
				end++
			}
		}
		msg = buf[start:end]
	} else {
		msg = e.dataIndication(buf, peer, n)
	}
	out.add(Command{Op: OpSendClient, Client: a.client, Data: msg})
}

// dataIndication writes a Data indication (RFC 8656 §10.3) around the
// datagram at buf[Headroom:Headroom+n] and returns it.
func (e *Engine) dataIndication(buf []byte, peer netip.AddrPort, n int) []byte {
	addrLen := 8
	if peer.Addr().Is6() {
		addrLen = 20
	}
	start := Headroom - stunwire.HeaderSize - stunwire.AttrHeaderSize - addrLen - stunwire.AttrHeaderSize
	end := Headroom + n
	for (end-start)%4 != 0 {
		buf[end] = 0
		end++
	}
	e.tid++
	h := buf[start:]
	binary.BigEndian.PutUint16(h, stun.NewType(stun.MethodData, stun.ClassIndication).Value())
	binary.BigEndian.PutUint16(h[2:], uint16(end-start-stunwire.HeaderSize))
	binary.BigEndian.PutUint32(h[4:], stunwire.MagicCookie)
	binary.BigEndian.PutUint64(h[8:], e.tid)
	binary.BigEndian.PutUint32(h[16:], uint32(e.shard))
	var tid [12]byte
	copy(tid[:], h[8:20])
	stunwire.PutXORAddress(h[stunwire.HeaderSize:], stun.AttrXORPeerAddress, peer, &tid)
	d := h[stunwire.HeaderSize+stunwire.AttrHeaderSize+addrLen:]
	binary.BigEndian.PutUint16(d, uint16(stun.AttrData))
	binary.BigEndian.PutUint16(d[2:], uint16(n))
	return buf[start:end]
}
