package relay

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // STUN MESSAGE-INTEGRITY is HMAC-SHA1 (RFC 8489 §14.5)
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"
)

// pionMaxLifetime is the longest LIFETIME pion honours; a longer one gets
// the server's default allocation lifetime (internal/server/util.go).
const pionMaxLifetime = time.Hour

// GateOptions configures a RequestGate. Zero fields mean unlimited.
type GateOptions struct {
	// Permissions caps the permissions (peer IP addresses) of one
	// allocation, Channels its channel bindings. A CreatePermission or
	// ChannelBind that would pass the cap is answered 508 (Insufficient
	// Capacity), as RFC 8656 §9.2 and §11.2 ask; refreshing what exists is
	// always allowed.
	Permissions, Channels int
	// MaxLifetime caps the LIFETIME a client may ask for in Allocate and
	// Refresh (1m to 1h; 0 or 1h or more: pion's own 1h cap).
	MaxLifetime time.Duration
	// Key returns the long-term credential key that verifies an
	// authenticated request (auth.Authenticator.Key), or nil. The gate
	// signs its 508 answers and the requests whose LIFETIME it lowers with
	// it.
	Key func(raw []byte) []byte
	// Log receives debug lines on refusals; nil discards.
	Log *slog.Logger
}

// RequestGate enforces the quotas pion has no hook for: permissions and
// channels per allocation and the maximum LIFETIME. It sits in the edge
// layer (edge.Options.Gate), sees each authenticated request after the
// credential was verified and before pion handles it, and follows each
// allocation's permissions and channels through pion's events (Events).
//
// Why there: pion's PermissionHandler sees neither the allocation nor the
// request kind and can only refuse with 403 (CreatePermission) or 401
// (ChannelBind), while RFC 8656 asks for 508 when a capacity limit is hit;
// and pion takes any LIFETIME under an hour. A response or request signed
// with MESSAGE-INTEGRITY cannot be edited without the key, so the gate,
// which has the key, answers 508 itself (signed) and lowers LIFETIME in the
// request before pion reads it (re-signed), so the LIFETIME pion grants and
// reports is the capped one and clients refresh in time.
//
// Check takes a mutex only for CreatePermission and ChannelBind requests,
// never for data packets.
type RequestGate struct {
	perms, chans int
	maxLifetime  uint32 // seconds; 0: no cap
	key          func([]byte) []byte
	log          *slog.Logger

	mu     sync.Mutex
	allocs map[tuple]*allocPeers

	refusedPerms   atomic.Uint64
	refusedChans   atomic.Uint64
	lifetimeCapped atomic.Uint64
}

// GateStats is a point-in-time copy of a RequestGate's counters.
type GateStats struct {
	// RefusedPermissions and RefusedChannels count requests answered 508.
	RefusedPermissions, RefusedChannels uint64
	// LifetimeCapped counts Allocate and Refresh requests whose LIFETIME
	// was lowered.
	LifetimeCapped uint64
}

// tuple is an allocation's client 5-tuple as pion keys it (its transport
// follows from the address type).
type tuple struct {
	src, dst netip.AddrPort
	stream   bool
}

func tupleOf(src, dst net.Addr) (tuple, bool) {
	s, sok, stream := addrPortOf(src)
	d, dok, _ := addrPortOf(dst)
	return tuple{src: s, dst: d, stream: stream}, sok && dok
}

func addrPortOf(a net.Addr) (ap netip.AddrPort, ok, stream bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap, stream = a.AddrPort(), true
	default:
		return netip.AddrPort{}, false, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid(), stream
}

// allocPeers is what an allocation holds, from pion's events.
type allocPeers struct {
	perms map[netip.Addr]struct{}
	chans map[uint16]netip.AddrPort
}

// NewRequestGate checks o and returns a gate.
func NewRequestGate(o GateOptions) (*RequestGate, error) {
	switch {
	case o.Permissions < 0:
		return nil, fmt.Errorf("relay: permission quota %d is negative", o.Permissions)
	case o.Channels < 0:
		return nil, fmt.Errorf("relay: channel quota %d is negative", o.Channels)
	case o.MaxLifetime < 0 || (o.MaxLifetime > 0 && o.MaxLifetime < time.Minute):
		return nil, fmt.Errorf("relay: maximum lifetime %s is out of range; use 1m to 1h", o.MaxLifetime)
	}
	g := &RequestGate{
		perms:  o.Permissions,
		chans:  o.Channels,
		key:    o.Key,
		log:    o.Log,
		allocs: map[tuple]*allocPeers{},
	}
	if o.MaxLifetime > 0 && o.MaxLifetime < pionMaxLifetime {
		g.maxLifetime = uint32(o.MaxLifetime / time.Second)
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	return g, nil
}

// Events returns the pion event callbacks that keep the gate's view of
// each allocation's permissions and channels. Chain them into the server's
// EventHandler.
func (g *RequestGate) Events() turn.EventHandler {
	if g == nil || (g.perms == 0 && g.chans == 0) {
		return turn.EventHandler{}
	}
	return turn.EventHandler{
		OnAllocationCreated: func(src, dst net.Addr, _, _, _ string, _ net.Addr, _ int) {
			if t, ok := tupleOf(src, dst); ok {
				g.mu.Lock()
				g.allocs[t] = &allocPeers{perms: map[netip.Addr]struct{}{}, chans: map[uint16]netip.AddrPort{}}
				g.mu.Unlock()
			}
		},
		OnAllocationDeleted: func(src, dst net.Addr, _, _, _ string) {
			if t, ok := tupleOf(src, dst); ok {
				g.mu.Lock()
				delete(g.allocs, t)
				g.mu.Unlock()
			}
		},
		OnPermissionCreated: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			g.permission(src, dst, peer, true)
		},
		OnPermissionDeleted: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			g.permission(src, dst, peer, false)
		},
		OnChannelCreated: func(src, dst net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
			g.channel(src, dst, peer, number, true)
		},
		OnChannelDeleted: func(src, dst net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
			g.channel(src, dst, peer, number, false)
		},
	}
}

func (g *RequestGate) permission(src, dst net.Addr, peer net.IP, add bool) {
	t, ok := tupleOf(src, dst)
	ip, ipok := netip.AddrFromSlice(peer)
	if !ok || !ipok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.allocs[t]
	if a == nil {
		return
	}
	if add {
		a.perms[ip.Unmap()] = struct{}{}
	} else {
		delete(a.perms, ip.Unmap())
	}
}

func (g *RequestGate) channel(src, dst, peer net.Addr, number uint16, add bool) {
	t, ok := tupleOf(src, dst)
	p, pok, _ := addrPortOf(peer)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.allocs[t]
	if a == nil {
		return
	}
	if add && pok {
		a.chans[number] = p
	} else {
		delete(a.chans, number)
	}
}

// Check is edge.Options.Gate: it sees an authenticated request raw whose
// credential was verified, from client src reaching the local address
// local. It lowers a LIFETIME over the cap in place (re-signing raw, whose
// length does not change) and returns nil, or returns the signed 508 reply
// for a CreatePermission or ChannelBind over the allocation's quota, or nil
// to let the request through.
func (g *RequestGate) Check(raw []byte, src, local net.Addr) []byte {
	if g == nil {
		return nil
	}
	r, ok := parseGateRequest(raw)
	if !ok {
		return nil // pion answers malformed requests
	}
	switch r.method {
	case stun.MethodAllocate, stun.MethodRefresh:
		g.capLifetime(raw, &r)
		return nil
	case stun.MethodCreatePermission:
		if g.perms > 0 {
			return g.checkPermissions(raw, &r, src, local)
		}
	case stun.MethodChannelBind:
		if g.chans > 0 || g.perms > 0 {
			return g.checkChannel(raw, &r, src, local)
		}
	}
	return nil
}

// capLifetime lowers a LIFETIME between the cap and pion's own one.
func (g *RequestGate) capLifetime(raw []byte, r *gateRequest) {
	if g.maxLifetime == 0 || r.lifetimeOff == 0 || r.integrityOff == 0 {
		return
	}
	v := binary.BigEndian.Uint32(raw[r.lifetimeOff:])
	if v <= g.maxLifetime || v >= uint32(pionMaxLifetime/time.Second) {
		return // within the cap, or one pion replaces by the default
	}
	key := g.key(raw)
	if key == nil {
		return
	}
	binary.BigEndian.PutUint32(raw[r.lifetimeOff:], g.maxLifetime)
	resign(raw, r, key)
	g.lifetimeCapped.Add(1)
	g.log.Debug("allocation LIFETIME capped", "requested_s", v, "granted_s", g.maxLifetime)
}

// resign recomputes MESSAGE-INTEGRITY (and FINGERPRINT, if it follows) of
// a request edited in place. Attributes after MESSAGE-INTEGRITY other than
// FINGERPRINT (MESSAGE-INTEGRITY-SHA256, which pion ignores) are left as
// they are.
func resign(raw []byte, r *gateRequest, key []byte) {
	length := binary.BigEndian.Uint16(raw[2:4])
	// MESSAGE-INTEGRITY covers the header with a length up to and
	// including itself (RFC 8489 §14.5).
	binary.BigEndian.PutUint16(raw[2:4], uint16(r.integrityOff+4+20-stunHeader))
	mac := hmac.New(sha1.New, key)
	mac.Write(raw[:r.integrityOff])
	mac.Sum(raw[r.integrityOff+4 : r.integrityOff+4])
	binary.BigEndian.PutUint16(raw[2:4], length)
	if r.fingerprintOff > 0 {
		binary.BigEndian.PutUint32(raw[r.fingerprintOff+4:], stun.FingerprintValue(raw[:r.fingerprintOff]))
	}
}

func (g *RequestGate) checkPermissions(raw []byte, r *gateRequest, src, local net.Addr) []byte {
	t, ok := tupleOf(src, local)
	if !ok {
		return nil
	}
	g.mu.Lock()
	a := g.allocs[t]
	over := false
	if a != nil {
		added := 0
		for i := 0; i < r.npeers; i++ {
			ip := r.peer(raw, i).Addr()
			if _, ok := a.perms[ip]; ok || r.seenBefore(raw, i) {
				continue
			}
			added++
		}
		over = added > 0 && len(a.perms)+added > g.perms
	}
	g.mu.Unlock()
	if !over {
		return nil
	}
	g.refusedPerms.Add(1)
	g.log.Debug("permission refused: allocation permission quota reached", "client", src, "quota", g.perms)
	return g.insufficientCapacity(raw, r)
}

func (g *RequestGate) checkChannel(raw []byte, r *gateRequest, src, local net.Addr) []byte {
	t, ok := tupleOf(src, local)
	if !ok || r.npeers != 1 || !r.hasChannel {
		return nil
	}
	peer := r.peer(raw, 0)
	g.mu.Lock()
	a := g.allocs[t]
	what := ""
	if a != nil {
		_, bound := a.chans[r.channel]
		peerBound := false
		for _, p := range a.chans {
			if p == peer {
				peerBound = true
				break
			}
		}
		_, permitted := a.perms[peer.Addr()]
		switch {
		case bound || peerBound:
			// A refresh, or a conflict pion answers 400.
		case g.chans > 0 && len(a.chans) >= g.chans:
			what = "channel"
		case g.perms > 0 && !permitted && len(a.perms) >= g.perms:
			what = "permission"
		}
	}
	g.mu.Unlock()
	if what == "" {
		return nil
	}
	if what == "channel" {
		g.refusedChans.Add(1)
		g.log.Debug("channel bind refused: allocation channel quota reached", "client", src, "quota", g.chans)
	} else {
		g.refusedPerms.Add(1)
		g.log.Debug("channel bind refused: allocation permission quota reached", "client", src, "quota", g.perms)
	}
	return g.insufficientCapacity(raw, r)
}

// insufficientCapacity builds the signed 508 error response to raw.
func (g *RequestGate) insufficientCapacity(raw []byte, r *gateRequest) []byte {
	var key []byte
	if g.key != nil {
		key = g.key(raw)
	}
	setters := []stun.Setter{
		&stun.Message{TransactionID: r.tid},
		stun.NewType(r.method, stun.ClassErrorResponse),
		stun.CodeInsufficientCapacity,
	}
	if key != nil {
		setters = append(setters, stun.MessageIntegrity(key))
	}
	m, err := stun.Build(setters...)
	if err != nil {
		return nil // cannot happen with these setters; let pion answer
	}
	return m.Raw
}

// Stats returns the counters.
func (g *RequestGate) Stats() GateStats {
	if g == nil {
		return GateStats{}
	}
	return GateStats{
		RefusedPermissions: g.refusedPerms.Load(),
		RefusedChannels:    g.refusedChans.Load(),
		LifetimeCapped:     g.lifetimeCapped.Load(),
	}
}

// Wire constants the gate parser needs (RFC 8489, RFC 8656).
const (
	stunHeader       = 20
	stunMagic        = 0x2112A442
	attrLifetime     = 0x000D
	attrChannelNum   = 0x000C
	attrXORPeer      = 0x0012
	attrIntegrity    = 0x0008
	attrFingerprint  = 0x8028
	maxGatedPeers    = 256
	familyIPv4       = 0x01
	familyIPv6       = 0x02
	classRequestBits = 0x0110
)

// gateRequest is what the gate reads from a request, as offsets into the
// raw bytes so parsing allocates nothing.
type gateRequest struct {
	method stun.Method
	tid    [stun.TransactionIDSize]byte

	lifetimeOff    int // LIFETIME value (first), 0 if none
	integrityOff   int // MESSAGE-INTEGRITY attribute (first), 0 if none
	fingerprintOff int // FINGERPRINT attribute when it is the last one after MESSAGE-INTEGRITY, else 0

	npeers   int
	peerOffs [maxGatedPeers]uint16 // XOR-PEER-ADDRESS values

	channel    uint16
	hasChannel bool
}

// parseGateRequest reads a STUN request. It reports false for anything
// else and for requests whose gated attributes are malformed (pion answers
// those with 400), or that carry more peers than it keeps.
func parseGateRequest(raw []byte) (r gateRequest, ok bool) {
	if len(raw) < stunHeader || raw[0]&0xC0 != 0 || binary.BigEndian.Uint32(raw[4:8]) != stunMagic {
		return r, false
	}
	l := int(binary.BigEndian.Uint16(raw[2:4]))
	if l%4 != 0 || stunHeader+l != len(raw) {
		return r, false
	}
	typ := binary.BigEndian.Uint16(raw[0:2])
	if typ&classRequestBits != 0 {
		return r, false // not a request
	}
	var mt stun.MessageType
	mt.ReadValue(typ)
	r.method = mt.Method
	copy(r.tid[:], raw[8:stunHeader])
	for off := stunHeader; off < len(raw); {
		if off+4 > len(raw) {
			return r, false
		}
		at := binary.BigEndian.Uint16(raw[off:])
		al := int(binary.BigEndian.Uint16(raw[off+2:]))
		end := off + 4 + (al+3)&^3
		if end > len(raw) {
			return r, false
		}
		v := raw[off+4 : off+4+al]
		switch at {
		case attrLifetime:
			if r.lifetimeOff == 0 {
				if al != 4 {
					return r, false
				}
				r.lifetimeOff = off + 4
			}
		case attrChannelNum:
			if al != 4 {
				return r, false
			}
			if !r.hasChannel {
				r.channel, r.hasChannel = binary.BigEndian.Uint16(v), true
			}
		case attrXORPeer:
			if len(v) < 4 || !(v[1] == familyIPv4 && al == 8 || v[1] == familyIPv6 && al == 20) {
				return r, false
			}
			if r.npeers == maxGatedPeers {
				return r, false
			}
			r.peerOffs[r.npeers] = uint16(off + 4)
			r.npeers++
		case attrIntegrity:
			if r.integrityOff == 0 {
				if al != 20 {
					return r, false
				}
				r.integrityOff = off
			}
		case attrFingerprint:
			if r.integrityOff > 0 && end == len(raw) && al == 4 {
				r.fingerprintOff = off
			}
		}
		off = end
	}
	return r, true
}

// peer decodes the i-th XOR-PEER-ADDRESS (checked by parseGateRequest).
func (r *gateRequest) peer(raw []byte, i int) netip.AddrPort {
	v := raw[r.peerOffs[i]:]
	port := binary.BigEndian.Uint16(v[2:4]) ^ uint16(stunMagic>>16)
	if v[1] == familyIPv4 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(v[4:8])^stunMagic)
		return netip.AddrPortFrom(netip.AddrFrom4(a), port)
	}
	var a [16]byte
	copy(a[:], v[4:20])
	for j := range 4 {
		a[j] ^= raw[4+j] // magic cookie
	}
	for j := 4; j < 16; j++ {
		a[j] ^= raw[8+j-4] // transaction ID
	}
	return netip.AddrPortFrom(netip.AddrFrom16(a).Unmap(), port)
}

// seenBefore reports whether the i-th peer's IP address appears earlier in
// the request.
func (r *gateRequest) seenBefore(raw []byte, i int) bool {
	ip := r.peer(raw, i).Addr()
	for j := range i {
		if r.peer(raw, j).Addr() == ip {
			return true
		}
	}
	return false
}

// Sign is edge.Options.Sign: it adds MESSAGE-INTEGRITY, with the key that
// verifies the request req, to resp, pion's unsigned answer to it (the
// ConnectionBind success, Connect errors). It returns nil when resp is
// already signed or no key verifies req.
func (g *RequestGate) Sign(req, resp []byte) []byte {
	if g == nil || g.key == nil {
		return nil
	}
	m := &stun.Message{Raw: append([]byte(nil), resp...)}
	if m.Decode() != nil || m.Contains(stun.AttrMessageIntegrity) || m.Contains(stun.AttrFingerprint) {
		return nil
	}
	key := g.key(req)
	if key == nil {
		return nil
	}
	if err := stun.MessageIntegrity(key).AddTo(m); err != nil {
		return nil
	}
	return m.Raw
}
