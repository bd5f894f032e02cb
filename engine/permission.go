package engine

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

// refresh handles Refresh (RFC 8656 §7.3): a new lifetime, or LIFETIME 0
// to release the allocation (or, with REQUESTED-ADDRESS-FAMILY, one
// family of a dual allocation).
func (e *Engine) refresh(out *Output, c *Client, m *stunwire.Message, r authResult, reqLen int) {
	a := r.a
	if a == nil || a.pending != nil {
		e.fail(out, c, m, reqLen, 437, r.key)
		return
	}
	var fam uint8
	if v, ok := m.Get(stun.AttrRequestedAddressFamily); ok {
		if len(v) != 4 || (v[0] != stunwire.FamilyIPv4 && v[0] != stunwire.FamilyIPv6) {
			e.fail(out, c, m, reqLen, 400, r.key)
			return
		}
		fam = 4
		if v[0] == stunwire.FamilyIPv6 {
			fam = 6
		}
		if a.end(fam) == nil {
			e.fail(out, c, m, reqLen, 443, r.key)
			return
		}
	}
	lt := e.lifetime(m)
	if v, ok := m.Uint32(stun.AttrLifetime); ok && v == 0 {
		lt = 0
	}
	if lt == 0 && fam != 0 && a.nEnds > 1 {
		e.closeEnd(out, a, fam)
		lt = uint32(max(a.expires-e.now, 0) / int64(time.Second))
	} else if lt == 0 {
		b := e.begin(out, m, stun.ClassSuccessResponse)
		b.AddUint32(stun.AttrLifetime, 0)
		e.send(out, c, r.key, m.HasFingerprint, reqLen)
		e.deleteAllocation(out, a, EndClient)
		return
	} else {
		a.lifetime = lt
		a.expires = e.now + int64(lt)*int64(time.Second)
		e.schedule(a)
	}
	b := e.begin(out, m, stun.ClassSuccessResponse)
	b.AddUint32(stun.AttrLifetime, lt)
	e.send(out, c, r.key, m.HasFingerprint, reqLen)
}

// closeEnd closes the relay of family f of a dual allocation.
func (e *Engine) closeEnd(out *Output, a *allocation, f uint8) {
	for i := range a.ends[:a.nEnds] {
		if a.ends[i].family != f || !a.ends[i].open {
			continue
		}
		e.freeRelaySlot(a.ends[i].id)
		out.add(Command{Op: OpCloseRelay, Relay: a.ends[i].id})
		e.stats.Active[a.client.Transport][familyIndex(f)].dec()
		copy(a.ends[i:], a.ends[i+1:a.nEnds])
		a.nEnds--
		a.ends[a.nEnds] = relayEnd{}
		return
	}
}

// checkPeer runs the peer policy on a peer of a: the family must be one a
// relays, the address one the policy admits and, with port (ChannelBind
// and Connect name a transport address; a permission is for an IP
// address), the port one the policy admits on it. It returns the error
// code, 0 when the peer is admitted.
func (e *Engine) checkPeer(c *Client, a *allocation, peer netip.AddrPort, port bool) int {
	ip := peer.Addr().Unmap()
	if a.end(familyOf(ip)) == nil {
		return 443
	}
	pol := e.sh.policy.Load()
	ok, why := pol.Check(ip)
	if ok && port && !pol.PortAllowed(peer) {
		ok, why = false, "self"
	}
	if ok {
		return 0
	}
	if i, known := e.sh.denyIndex[why]; known {
		e.stats.PeerDenied[i].inc()
	}
	e.logClient(logPeerRefused,
		slog.String("client", c.Remote.String()),
		slog.String("user", a.username),
		slog.String("peer", peer.String()),
		slog.String("reason", why))
	return 403
}

// maxPeersPerRequest bounds the XOR-PEER-ADDRESS attributes one
// CreatePermission may carry.
const maxPeersPerRequest = 32

// createPermission handles CreatePermission (RFC 8656 §9): every peer is
// checked before any permission is installed.
func (e *Engine) createPermission(out *Output, c *Client, m *stunwire.Message, r authResult, reqLen int) {
	a := r.a
	if a == nil || a.pending != nil {
		e.fail(out, c, m, reqLen, 437, r.key)
		return
	}
	var peers [maxPeersPerRequest]netip.Addr
	n, code := 0, 0
	m.EachXORAddress(stun.AttrXORPeerAddress, func(ap netip.AddrPort, ok bool) bool {
		switch {
		case !ok || n == len(peers):
			code = 400
		default:
			code = e.checkPeer(c, a, ap, false)
		}
		if code != 0 {
			return false
		}
		peers[n] = ap.Addr().Unmap()
		n++
		return true
	})
	if code == 0 && n == 0 {
		code = 400
	}
	if code == 0 && e.cfg.Permissions > 0 {
		added := 0
		for _, ip := range peers[:n] {
			if !a.permitted(ip, e.now) {
				added++
			}
		}
		if added > 0 && a.livePermissions(e.now)+added > e.cfg.Permissions {
			code = 508
		}
	}
	if code != 0 {
		e.fail(out, c, m, reqLen, code, r.key)
		return
	}
	for _, ip := range peers[:n] {
		e.permit(a, ip)
		e.reoffload(out, a, ip)
	}
	e.schedule(a)
	e.begin(out, m, stun.ClassSuccessResponse)
	e.send(out, c, r.key, m.HasFingerprint, reqLen)
}

// permit installs or refreshes the permission for ip.
func (e *Engine) permit(a *allocation, ip netip.Addr) {
	exp := e.now + int64(PermissionLifetime)
	for i := range a.perms {
		if a.perms[i].ip == ip {
			a.perms[i].expires = exp
			return
		}
	}
	a.perms = append(a.perms, permission{ip: ip, expires: exp})
	e.stats.PermissionsCreated.inc()
	e.stats.PermissionsActive.inc()
}

// channelBind handles ChannelBind (RFC 8656 §11): it binds or refreshes a
// channel and installs or refreshes the peer's permission.
func (e *Engine) channelBind(out *Output, c *Client, m *stunwire.Message, r authResult, reqLen int) {
	a := r.a
	if a == nil || a.pending != nil {
		e.fail(out, c, m, reqLen, 437, r.key)
		return
	}
	if a.tcp {
		e.fail(out, c, m, reqLen, 400, r.key) // RFC 6062 relays have no channels
		return
	}
	v, ok := m.Uint32(stun.AttrChannelNumber)
	number := uint16(v >> 16)
	peer, present, okPeer := m.GetXORAddress(stun.AttrXORPeerAddress)
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	code := 0
	switch {
	case !ok || number < stunwire.MinChannel || number > stunwire.MaxChannel || !present || !okPeer:
		code = 400
	default:
		code = e.checkPeer(c, a, peer, true)
	}
	var ch *channel
	if code == 0 {
		for i := range a.chans {
			x := &a.chans[i]
			switch {
			case x.number == number && x.peer != peer:
				code = 400 // the number is bound to another peer (or still held after expiry)
			case x.number == number:
				ch = x
			case x.peer == peer && x.expires > e.now:
				code = 400 // the peer is bound to another number
			}
		}
	}
	if code == 0 && e.cfg.Permissions > 0 && !a.permitted(peer.Addr(), e.now) && a.livePermissions(e.now) >= e.cfg.Permissions {
		code = 508 // the binding would install a permission over the quota
	}
	if code == 0 && ch == nil && e.cfg.Channels > 0 {
		live := 0
		for i := range a.chans {
			if a.chans[i].active {
				live++
			}
		}
		if live >= e.cfg.Channels {
			code = 508
		}
	}
	if code != 0 {
		e.fail(out, c, m, reqLen, code, r.key)
		return
	}
	exp := e.now + int64(ChannelLifetime)
	if ch == nil {
		a.chans = append(a.chans, channel{number: number, peer: peer})
		ch = &a.chans[len(a.chans)-1]
		e.stats.ChannelsCreated.inc()
	}
	ch.expires = exp
	if !ch.active {
		ch.active = true
		e.stats.ChannelsActive.inc()
	}
	e.permit(a, peer.Addr())
	e.schedule(a)
	e.begin(out, m, stun.ClassSuccessResponse)
	e.send(out, c, r.key, m.HasFingerprint, reqLen)
	e.offload(out, a, ch) // after the answer: the client learns of the channel first
}
