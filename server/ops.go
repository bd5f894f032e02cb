package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/relay"
)

// ErrDraining is wrapped by the relay allocation errors of a draining
// server.
var ErrDraining = errors.New("server is draining: no new allocations")

// Reasons an Allocate request is refused, as passed to
// Observer.AllocationRefused.
const (
	RefusedAuth     = "auth"     // the credential was refused
	RefusedQuota    = "quota"    // a quota (486)
	RefusedPolicy   = "policy"   // a relay of an address family ferry does not offer
	RefusedCapacity = "capacity" // no relay port could be bound (508)
	RefusedDraining = "draining" // the server is draining (508)
)

// RefusedReasons lists every reason Observer.AllocationRefused is given.
func RefusedReasons() []string {
	return []string{RefusedAuth, RefusedQuota, RefusedPolicy, RefusedCapacity, RefusedDraining}
}

// Observer is told what pion's EventHandler does not carry. Its methods are
// called per refused request, never per relayed packet, and must not block.
type Observer interface {
	// AuthFailed is called for every request whose credential was refused,
	// with the STUN method name ("Allocate", "Refresh", ...).
	AuthFailed(method string)
	// AllocationRefused is called for every refused Allocate request, with
	// one of RefusedReasons.
	AllocationRefused(reason string)
	// PeerDenied is called for every peer the peer policy refused, with one
	// of relay.Reasons.
	PeerDenied(reason string)
}

// gate is the RelayAddressGenerator pion sees: ferry's PortAllocator behind
// the drain switch, reporting refusals to the Observer.
//
// A draining server refuses new relays, which pion answers with 508
// (Insufficient Capacity), not with the 486 (Allocation Quota Reached) a
// QuotaHandler would produce. 486 says this username has used up its quota,
// a fact about the user that a client may carry to every server of the same
// service; 508 says this server has no relay to give right now, which is
// the truth while draining. RFC 8656 asks a client to wait before trying
// this server again after either, so it takes the relay candidates of its
// other TURN servers (browsers gather from every iceServers entry at once),
// and an ICE restart lands on another node. Refresh, CreatePermission,
// ChannelBind and Connect of existing allocations are not gated.
type gate struct {
	ports    *relay.PortAllocator
	obs      Observer
	draining atomic.Bool
}

var _ turn.RelayAddressGenerator = (*gate)(nil)

func (g *gate) Validate() error { return g.ports.Validate() }

func (g *gate) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	if g.draining.Load() {
		g.refused(RefusedDraining)
		return nil, nil, fmt.Errorf("server: %s relay for %q: %w", c.Network, c.UserID, ErrDraining)
	}
	pc, addr, err := g.ports.AllocatePacketConn(c)
	if err != nil {
		g.refused(refusedReason(err))
	}
	return pc, addr, err
}

func (g *gate) AllocateListener(c turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	if g.draining.Load() {
		g.refused(RefusedDraining)
		return nil, nil, fmt.Errorf("server: %s relay for %q: %w", c.Network, c.UserID, ErrDraining)
	}
	l, addr, err := g.ports.AllocateListener(c)
	if err != nil {
		g.refused(refusedReason(err))
	}
	return l, addr, err
}

// AllocateConn dials a peer for a Connect on an existing allocation, also
// while draining.
func (g *gate) AllocateConn(c turn.AllocateConnConfig) (net.Conn, error) {
	return g.ports.AllocateConn(c)
}

func (g *gate) refused(reason string) {
	if g.obs != nil {
		g.obs.AllocationRefused(reason)
	}
}

func refusedReason(err error) string {
	if errors.Is(err, relay.ErrFamilyUnsupported) {
		return RefusedPolicy
	}
	return RefusedCapacity
}

// Drain stops granting new allocations; existing ones keep relaying and
// may be refreshed. It cannot be undone.
func (s *Server) Drain() { s.gate.draining.Store(true) }

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.gate.draining.Load() }

// Tracker returns the allocation tracker passed in Options, or nil.
func (s *Server) Tracker() *relay.Tracker { return s.tracker }

// Listening returns nil while every client-facing socket is open, else an
// error naming one that is not. Sockets that do not expose their file
// descriptor (TLS, DTLS listeners) are taken as open until Close.
func (s *Server) Listening() error {
	if s.closed.Load() {
		return errors.New("server closed")
	}
	check := func(what string, addr net.Addr, c any) error {
		sc, ok := c.(syscall.Conn)
		if !ok {
			return nil
		}
		rc, err := sc.SyscallConn()
		if err == nil {
			err = rc.Control(func(uintptr) {})
		}
		if err != nil {
			return fmt.Errorf("%s listener %s: %w", what, addr, err)
		}
		return nil
	}
	for _, pc := range s.sockets.Packet {
		if err := check("udp", pc.LocalAddr(), pc); err != nil {
			return err
		}
	}
	for _, l := range s.sockets.Stream {
		if err := check("stream", l.Addr(), l); err != nil {
			return err
		}
	}
	return nil
}

// joinEvents calls the callbacks of each handler in turn.
func joinEvents(hs ...turn.EventHandler) turn.EventHandler {
	var out turn.EventHandler
	for _, h := range hs {
		out.OnAuth = join7(out.OnAuth, h.OnAuth)
		out.OnAllocationCreated = joinCreated(out.OnAllocationCreated, h.OnAllocationCreated)
		out.OnAllocationDeleted = join5(out.OnAllocationDeleted, h.OnAllocationDeleted)
		out.OnAllocationError = join4(out.OnAllocationError, h.OnAllocationError)
		out.OnPermissionCreated = joinPerm(out.OnPermissionCreated, h.OnPermissionCreated)
		out.OnPermissionDeleted = joinPerm(out.OnPermissionDeleted, h.OnPermissionDeleted)
		out.OnChannelCreated = joinChan(out.OnChannelCreated, h.OnChannelCreated)
		out.OnChannelDeleted = joinChan(out.OnChannelDeleted, h.OnChannelDeleted)
	}
	return out
}

type (
	authFn    = func(src, dst net.Addr, proto, username, realm, method string, verdict bool)
	createdFn = func(src, dst net.Addr, proto, user, realm string, relayAddr net.Addr, reqPort int)
	deletedFn = func(src, dst net.Addr, proto, user, realm string)
	errorFn   = func(src, dst net.Addr, proto, msg string)
	permFn    = func(src, dst net.Addr, proto, user, realm string, relayAddr net.Addr, peer net.IP)
	chanFn    = func(src, dst net.Addr, proto, user, realm string, relayAddr, peer net.Addr, number uint16)
)

func join7(a, b authFn) authFn {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(src, dst net.Addr, proto, username, realm, method string, verdict bool) {
		a(src, dst, proto, username, realm, method, verdict)
		b(src, dst, proto, username, realm, method, verdict)
	}
}

func joinCreated(a, b createdFn) createdFn {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(src, dst net.Addr, proto, user, realm string, relayAddr net.Addr, reqPort int) {
		a(src, dst, proto, user, realm, relayAddr, reqPort)
		b(src, dst, proto, user, realm, relayAddr, reqPort)
	}
}

func join5(a, b deletedFn) deletedFn {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(src, dst net.Addr, proto, user, realm string) {
		a(src, dst, proto, user, realm)
		b(src, dst, proto, user, realm)
	}
}

func join4(a, b errorFn) errorFn {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(src, dst net.Addr, proto, msg string) {
		a(src, dst, proto, msg)
		b(src, dst, proto, msg)
	}
}

func joinPerm(a, b permFn) permFn {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(src, dst net.Addr, proto, user, realm string, relayAddr net.Addr, peer net.IP) {
		a(src, dst, proto, user, realm, relayAddr, peer)
		b(src, dst, proto, user, realm, relayAddr, peer)
	}
}

func joinChan(a, b chanFn) chanFn {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(src, dst net.Addr, proto, user, realm string, relayAddr, peer net.Addr, number uint16) {
		a(src, dst, proto, user, realm, relayAddr, peer, number)
		b(src, dst, proto, user, realm, relayAddr, peer, number)
	}
}

// observerEvents reports the authentication failures pion itself finds
// (MESSAGE-INTEGRITY that does not verify after Screen let the request
// through) to obs.
func observerEvents(obs Observer) turn.EventHandler {
	if obs == nil {
		return turn.EventHandler{}
	}
	return turn.EventHandler{
		OnAuth: func(_, _ net.Addr, _, _, _, method string, verdict bool) {
			if verdict {
				return
			}
			obs.AuthFailed(method)
			if method == "Allocate" {
				obs.AllocationRefused(RefusedAuth)
			}
		},
	}
}

// observeAuth reports the credentials h refuses to obs. pion sends no event
// for those.
func observeAuth(h turn.AuthHandler, obs Observer) turn.AuthHandler {
	if obs == nil {
		return h
	}
	return func(ra *turn.RequestAttributes) (string, []byte, bool) {
		user, key, ok := h(ra)
		if !ok {
			obs.AuthFailed(methodName(ra.Method))
			if ra.Method == stun.MethodAllocate {
				obs.AllocationRefused(RefusedAuth)
			}
		}
		return user, key, ok
	}
}

// observeScreen reports the requests screen answers with 401 to obs. It is
// called per authenticated request, not per relayed packet, and allocates
// nothing beyond what screen does.
func observeScreen(screen func([]byte, net.Addr) []byte, obs Observer) func([]byte, net.Addr) []byte {
	if obs == nil || screen == nil {
		return screen
	}
	return func(raw []byte, src net.Addr) []byte {
		reply := screen(raw, src)
		if reply != nil && len(raw) >= 2 {
			var typ stun.MessageType
			typ.ReadValue(binary.BigEndian.Uint16(raw[0:2]))
			obs.AuthFailed(methodName(typ.Method))
			if typ.Method == stun.MethodAllocate {
				obs.AllocationRefused(RefusedAuth)
			}
		}
		return reply
	}
}

// peerDenied is the PermissionHandler's onDeny for obs.
func peerDenied(obs Observer) func(string) {
	if obs == nil {
		return nil
	}
	return obs.PeerDenied
}

// AuthMethods lists the method names Observer.AuthFailed is given.
func AuthMethods() []string {
	return []string{"Allocate", "Refresh", "CreatePermission", "ChannelBind", "Connect", "ConnectionBind", "other"}
}

// methodName names the methods pion authenticates without allocating
// (stun.Method.String builds a map per call).
func methodName(m stun.Method) string {
	switch m {
	case stun.MethodAllocate:
		return "Allocate"
	case stun.MethodRefresh:
		return "Refresh"
	case stun.MethodCreatePermission:
		return "CreatePermission"
	case stun.MethodChannelBind:
		return "ChannelBind"
	case stun.MethodConnect:
		return "Connect"
	case stun.MethodConnectionBind:
		return "ConnectionBind"
	}
	return "other"
}
