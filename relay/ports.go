package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/internal/sockopt"
	"github.com/ferryrtc/ferry/internal/udpbatch"
)

var (
	// ErrPortsExhausted is wrapped by allocation errors when every port of
	// the range is taken (pion answers 508 Insufficient Capacity).
	ErrPortsExhausted = errors.New("no free relay port")
	// ErrFamilyUnsupported is wrapped when a relay of an address family
	// without a bind address is requested.
	ErrFamilyUnsupported = errors.New("address family not configured for relays")
	// ErrPeerDenied is wrapped when AllocateConn refuses a peer by policy.
	ErrPeerDenied = errors.New("peer denied by policy")
)

// Compile-time interface guards.
var (
	_ turn.RelayAddressGenerator = (*PortAllocator)(nil)
	_ slog.LogValuer             = (*PortAllocator)(nil)
)

const (
	// randomTries is how many random ports are tried before scanning.
	randomTries = 8
	// connectTimeout bounds an RFC 6062 Connect; RFC 6062 section 5.2 asks
	// for at least 30 s.
	connectTimeout = 30 * time.Second
	// relayBuffer is the receive and send buffer asked for on UDP relay
	// sockets (the kernel doubles it for its bookkeeping): room for a
	// burst of a few hundred datagrams from peers while pion's reader is
	// descheduled. Memory is only charged for queued datagrams, so idle
	// allocations cost nothing more.
	relayBuffer = 512 << 10
	// relayBatch is how many datagrams from peers one recvmmsg reads.
	relayBatch = 16
	// relayReadSize is the buffer per datagram: pion reads relay sockets
	// into 1600 bytes (rtpMTU), so longer datagrams were truncated anyway.
	relayReadSize = 1600
	// peerAddrs bounds each relay socket's cache of peer addresses.
	peerAddrs = 64
)

// PortAllocatorConfig configures a PortAllocator.
type PortAllocatorConfig struct {
	// Bind4 and Bind6 are the local addresses relay sockets bind to, per
	// family; an invalid (zero) address turns that family off.
	Bind4, Bind6 netip.Addr
	// Advertise4 and Advertise6 are put in XOR-RELAYED-ADDRESS (the
	// external address behind a 1:1 NAT); invalid means the bind address,
	// which then must not be a wildcard.
	Advertise4, Advertise6 netip.Addr
	// MinPort and MaxPort bound relay ports, inclusive. Both zero lets the
	// kernel pick any free port.
	MinPort, MaxPort uint16
	// Policy refuses denied TCP peers in AllocateConn, behind pion's
	// PermissionHandler. Nil means the default policy.
	Policy *Policy
	// Log receives debug lines; nil discards.
	Log *slog.Logger
	// Tracker, if set, wraps every relay socket and peer connection handed
	// to pion to count its traffic and list its allocation; nil: no
	// tracking.
	Tracker *Tracker
	// Quota, if set, counts allocations (refusing relays past its total
	// cap with ErrCapacity, which pion answers with 508) and applies its
	// bandwidth caps to relay sockets and peer connections; nil: no
	// quotas.
	Quota *Quota
}

// AddrPair is one family's relay addresses.
type AddrPair struct {
	// Bind is the local address relay sockets bind to.
	Bind netip.Addr
	// Advertise is the address given to clients.
	Advertise netip.Addr
}

// PortAllocator is ferry's pion RelayAddressGenerator: it binds relay
// sockets per address family inside a port range and advertises the
// configured external address. It is safe for concurrent use; share one per
// process so TCP relay ports are never handed out twice.
type PortAllocator struct {
	v4, v6   AddrPair // Bind invalid: family off
	min, max uint16
	policy   *Policy
	log      *slog.Logger
	tracker  *Tracker

	// selfPortDrops counts packets and connects refused because they aimed
	// at ferry's own relay address outside the relay port range.
	selfPortDrops atomic.Uint64
	quota         *Quota
	// batches lends recvmmsg buffers to relay sockets while they have
	// datagrams to hand pion, so idle allocations hold none.
	batches *udpbatch.Pool

	// parked holds even ports pion probed and reserved RTCP ports (park.go).
	parked park

	// tcpMu serialises TCP relay listener creation (allocation time only,
	// never per packet): see listenTCP.
	tcpMu sync.Mutex
}

// NewPortAllocator checks c and returns an allocator.
func NewPortAllocator(c PortAllocatorConfig) (*PortAllocator, error) {
	v4, err := addrPair("IPv4", c.Bind4, c.Advertise4, true)
	if err != nil {
		return nil, err
	}
	v6, err := addrPair("IPv6", c.Bind6, c.Advertise6, false)
	if err != nil {
		return nil, err
	}
	if !v4.Bind.IsValid() && !v6.Bind.IsValid() {
		return nil, errors.New("relay: no bind address: set an IPv4 or IPv6 relay address")
	}
	switch {
	case c.MinPort == 0 && c.MaxPort == 0:
	case c.MinPort == 0 || c.MaxPort == 0:
		return nil, fmt.Errorf("relay: port range %d-%d: ports must be 1-65535 (or both 0 for any port)", c.MinPort, c.MaxPort)
	case c.MinPort > c.MaxPort:
		return nil, fmt.Errorf("relay: port range %d-%d: minimum above maximum", c.MinPort, c.MaxPort)
	}
	policy := c.Policy
	if policy == nil {
		if policy, err = NewPolicy(PolicyOptions{}); err != nil {
			return nil, err
		}
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PortAllocator{v4: v4, v6: v6, min: c.MinPort, max: c.MaxPort, policy: policy, log: log, tracker: c.Tracker, quota: c.Quota,
		batches: udpbatch.NewPool(relayBatch, relayReadSize)}, nil
}

func addrPair(fam string, bind, adv netip.Addr, want4 bool) (AddrPair, error) {
	if !bind.IsValid() {
		if adv.IsValid() {
			return AddrPair{}, fmt.Errorf("relay: %s advertise address %s given without a %s bind address", fam, adv, fam)
		}
		return AddrPair{}, nil
	}
	if want4 {
		bind, adv = bind.Unmap(), adv.Unmap()
	}
	for _, a := range []struct {
		what string
		ip   netip.Addr
	}{{"bind", bind}, {"advertise", adv}} {
		switch {
		case !a.ip.IsValid():
		case a.ip.Is4() != want4 || a.ip.Is4In6():
			return AddrPair{}, fmt.Errorf("relay: %s %s address %s is not an %s address", fam, a.what, a.ip, fam)
		case a.ip.Zone() != "":
			return AddrPair{}, fmt.Errorf("relay: %s %s address %s has a zone; use a routable address", fam, a.what, a.ip)
		case a.ip.IsMulticast():
			return AddrPair{}, fmt.Errorf("relay: %s %s address %s is multicast", fam, a.what, a.ip)
		}
	}
	if adv.IsUnspecified() {
		return AddrPair{}, fmt.Errorf("relay: %s advertise address %s is a wildcard", fam, adv)
	}
	if !adv.IsValid() {
		if bind.IsUnspecified() {
			return AddrPair{}, fmt.Errorf("relay: %s bind address %s is a wildcard and cannot be advertised; set the %s advertise (external) address", fam, bind, fam)
		}
		adv = bind
	}
	return AddrPair{Bind: bind, Advertise: adv}, nil
}

// Families reports which address families relays are available in.
func (a *PortAllocator) Families() (v4, v6 bool) {
	return a.v4.Bind.IsValid(), a.v6.Bind.IsValid()
}

// Addrs returns the bind and advertised address of each enabled family,
// IPv4 first.
func (a *PortAllocator) Addrs() []AddrPair {
	var out []AddrPair
	for _, p := range []AddrPair{a.v4, a.v6} {
		if p.Bind.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

// LogValue describes the allocator for slog.
func (a *PortAllocator) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, 5)
	for _, f := range []struct {
		name string
		p    AddrPair
	}{{"v4", a.v4}, {"v6", a.v6}} {
		if f.p.Bind.IsValid() {
			attrs = append(attrs, slog.String(f.name+"_bind", f.p.Bind.String()),
				slog.String(f.name+"_advertise", f.p.Advertise.String()))
		}
	}
	ports := "any"
	if a.min != 0 {
		ports = fmt.Sprintf("%d-%d", a.min, a.max)
	}
	return slog.GroupValue(append(attrs, slog.String("ports", ports))...)
}

// Validate implements turn.RelayAddressGenerator; NewPortAllocator already
// checked everything.
func (a *PortAllocator) Validate() error {
	if a == nil || (!a.v4.Bind.IsValid() && !a.v6.Bind.IsValid()) {
		return errors.New("relay: port allocator not built by NewPortAllocator")
	}
	return nil
}

// family returns the addresses for pion's network name ("udp4", "tcp6", ...).
func (a *PortAllocator) family(network string, tcp bool) (AddrPair, error) {
	var p AddrPair
	var name string
	switch {
	case network == "udp4" && !tcp, network == "tcp4" && tcp:
		p, name = a.v4, "IPv4"
	case network == "udp6" && !tcp, network == "tcp6" && tcp:
		p, name = a.v6, "IPv6"
	default:
		return AddrPair{}, fmt.Errorf("relay: unsupported relay network %q", network)
	}
	if !p.Bind.IsValid() {
		return AddrPair{}, fmt.Errorf("relay: %s relay requested (%s): %w", name, network, ErrFamilyUnsupported)
	}
	return p, nil
}

// SelfPortDrops returns how many packets and TCP connects were refused for
// aiming at one of ferry's relay addresses outside the relay port range.
func (a *PortAllocator) SelfPortDrops() uint64 { return a.selfPortDrops.Load() }

// AllocatePacketConn binds a UDP relay socket. pion calls it for UDP
// allocations and to find an even port (EVEN-PORT), then again with
// RequestedPort set to bind exactly that port.
func (a *PortAllocator) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	p, err := a.family(conf.Network, false)
	if err != nil {
		return nil, nil, err
	}
	if conf.UserID == "" && conf.RequestedPort == 0 {
		// Only pion's even-port probe asks without a user (park.go).
		return a.probeEvenPort(conf.Network, p)
	}
	aq, err := a.quota.acquire(conf.UserID)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: %s relay for %q: %w", conf.Network, conf.UserID, err)
	}
	var conn *net.UDPConn
	if conf.RequestedPort != 0 {
		conn = a.parked.take(netip.AddrPortFrom(p.Bind, uint16(conf.RequestedPort)))
	}
	port := uint16(conf.RequestedPort)
	if conn == nil {
		port, err = a.pick(conf.Network, p.Bind, conf.RequestedPort, func(port uint16) error {
			c, err := net.ListenUDP(conf.Network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Bind, port)))
			if err != nil {
				return err
			}
			conn = c
			return nil
		})
	}
	if err != nil {
		aq.release()
		return nil, nil, err
	}
	if port == 0 {
		port = conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	}
	if conf.RequestedPort != 0 && port%2 == 0 && port < a.max {
		// An EVEN-PORT allocation: hold the next port for the
		// RESERVATION-TOKEN's Allocate. The probe parked it already;
		// without a probe (no port range) binding it is best effort.
		next := netip.AddrPortFrom(p.Bind, port+1)
		c := a.parked.take(next)
		if c == nil {
			c, _ = net.ListenUDP(conf.Network, net.UDPAddrFromAddrPort(next))
		}
		if c != nil {
			a.parked.put(next, c, reservationHold)
		}
	}
	// Errors only mean a smaller buffer (the kernel caps it at rmem_max
	// and wmem_max); the socket works either way.
	_ = conn.SetReadBuffer(relayBuffer)
	_ = conn.SetWriteBuffer(relayBuffer)
	relayAddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Advertise, port))
	aq.bound(relayAddr)
	batched := udpbatch.Wrap(conn, udpbatch.Options{Pool: a.batches, Addrs: peerAddrs})
	guarded := &portGuard{PacketConn: batched, policy: a.policy, dropped: &a.selfPortDrops}
	pc := a.tracker.WrapPacketConn(aq.wrapPacketConn(guarded), relayAddr)
	return aq.wrapWriter(pc), relayAddr, nil
}

// probeEvenPort serves pion's GetRandomEvenPort: a bound socket whose Close
// parks an even port until pion binds it again for the allocation. With a
// port range it only offers an even port whose successor is free too, and
// parks the successor at once: pion answers every EVEN-PORT with a
// RESERVATION-TOKEN for that port, and checks only the even one, so a busy
// successor would fail the second Allocate with 508.
func (a *PortAllocator) probeEvenPort(network string, p AddrPair) (net.PacketConn, net.Addr, error) {
	var conn *net.UDPConn
	port, err := a.pick(network, p.Bind, 0, func(port uint16) error {
		if port != 0 && (port%2 != 0 || port >= a.max) {
			return syscall.EADDRINUSE // not the start of a free pair: try another
		}
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Bind, port)))
		if err != nil {
			return err
		}
		if port != 0 {
			next := netip.AddrPortFrom(p.Bind, port+1)
			c2, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(next))
			if err != nil {
				_ = c.Close()
				return err
			}
			a.parked.put(next, c2, probeHold)
		}
		conn = c
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if port == 0 {
		port = conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	}
	pc := &probeConn{UDPConn: conn, park: &a.parked, ap: netip.AddrPortFrom(p.Bind, port)}
	return pc, net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.Advertise, port)), nil
}

// AllocateListener opens a TCP relay listener (RFC 6062). Like pion it sets
// SO_REUSEADDR and SO_REUSEPORT, which Connect needs to dial peers from the
// listening port; unlike pion it first checks with a probe socket that no
// other listener holds the port, since SO_REUSEPORT would otherwise let two
// allocations share one.
func (a *PortAllocator) AllocateListener(conf turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	p, err := a.family(conf.Network, true)
	if err != nil {
		return nil, nil, err
	}
	aq, err := a.quota.acquire(conf.UserID)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: %s relay for %q: %w", conf.Network, conf.UserID, err)
	}
	a.tcpMu.Lock()
	defer a.tcpMu.Unlock()
	lc := net.ListenConfig{Control: sockopt.ReuseAddrPort}
	var ln net.Listener
	port, err := a.pick(conf.Network, p.Bind, conf.RequestedPort, func(port uint16) error {
		if port != 0 {
			if err := probeTCP(p.Bind, port); err != nil {
				return err
			}
		}
		l, err := lc.Listen(context.Background(), conf.Network, netip.AddrPortFrom(p.Bind, port).String())
		if err != nil {
			return err
		}
		ln = l
		return nil
	})
	if err != nil {
		aq.release()
		return nil, nil, err
	}
	if port == 0 {
		port = ln.Addr().(*net.TCPAddr).AddrPort().Port()
	}
	relayAddr := net.TCPAddrFromAddrPort(netip.AddrPortFrom(p.Advertise, port))
	aq.bound(relayAddr)
	return a.tracker.WrapListener(aq.wrapListener(ln), relayAddr), relayAddr, nil
}

// AllocateConn dials a TCP peer for an RFC 6062 Connect from the relay
// port. pion passes the advertised relay address as LocalAddr; the socket is
// bound to the family's bind address and that port. Peers the policy denies
// are refused before any packet is sent.
func (a *PortAllocator) AllocateConn(conf turn.AllocateConnConfig) (net.Conn, error) {
	p, err := a.family(conf.Network, true)
	if err != nil {
		return nil, err
	}
	remote, ok := conf.RemoteAddr.(*net.TCPAddr)
	if !ok || remote == nil {
		return nil, fmt.Errorf("relay: connect: peer address %v is not a TCP address", conf.RemoteAddr)
	}
	local, ok := conf.LocalAddr.(*net.TCPAddr)
	if !ok || local == nil {
		return nil, fmt.Errorf("relay: connect: relay address %v is not a TCP address", conf.LocalAddr)
	}
	peer := remote.AddrPort()
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	if ok, why := a.policy.Check(peer.Addr()); !ok {
		a.log.Debug("relay connect denied", "user", conf.UserID, "peer", peer, "reason", why)
		return nil, fmt.Errorf("relay: connect to peer %s (%s): %w", peer, why, ErrPeerDenied)
	}
	if !a.policy.PortAllowed(peer) {
		a.selfPortDrops.Add(1)
		a.log.Debug("relay connect denied", "user", conf.UserID, "peer", peer, "reason", "self-port")
		return nil, fmt.Errorf("relay: connect to peer %s (ferry's own address outside the relay ports): %w", peer, ErrPeerDenied)
	}
	if peer.Addr().Is4() != p.Bind.Is4() {
		return nil, fmt.Errorf("relay: connect to peer %s from a %s relay: address family mismatch", peer, conf.Network)
	}
	from := netip.AddrPortFrom(p.Bind, local.AddrPort().Port())
	d := net.Dialer{
		LocalAddr: net.TCPAddrFromAddrPort(from),
		Control:   sockopt.ReuseAddrPort,
		Timeout:   connectTimeout,
	}
	conn, err := d.Dial(conf.Network, peer.String())
	if err != nil {
		return nil, fmt.Errorf("relay: connect from %s to peer %s: %w", from, peer, err)
	}
	return a.tracker.WrapConn(a.quota.lookup(conf.LocalAddr).wrapConn(conn), conf.LocalAddr), nil
}

// pick binds a port with bind: exactly the requested one if any, else a
// few random ones, then every port of the range from a random start. Only
// "in use" and "permission denied" move on to the next port; any other error
// would repeat for every port and is returned at once.
func (a *PortAllocator) pick(network string, bind netip.Addr, requested int, try func(port uint16) error) (uint16, error) {
	if requested != 0 {
		if requested < 0 || requested > 65535 || (a.min != 0 && (requested < int(a.min) || requested > int(a.max))) {
			return 0, fmt.Errorf("relay: requested %s port %d outside range %d-%d", network, requested, a.min, a.max)
		}
		if err := try(uint16(requested)); err != nil {
			return 0, fmt.Errorf("relay: bind requested %s port %s: %w", network, netip.AddrPortFrom(bind, uint16(requested)), err)
		}
		return uint16(requested), nil
	}
	if a.min == 0 {
		if err := try(0); err != nil {
			return 0, fmt.Errorf("relay: bind %s relay on %s: %w", network, bind, err)
		}
		return 0, nil
	}
	n := uint32(a.max-a.min) + 1
	attempt := func(port uint16) (bool, error) {
		err := try(port)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EADDRINUSE), errors.Is(err, syscall.EACCES):
			return false, nil
		default:
			return false, fmt.Errorf("relay: bind %s relay on %s: %w", network, netip.AddrPortFrom(bind, port), err)
		}
	}
	for range min(randomTries, n) {
		port := a.min + uint16(rand.N(n))
		if ok, err := attempt(port); ok || err != nil {
			return port, err
		}
	}
	start := rand.N(n)
	for i := range n {
		port := a.min + uint16((start+i)%n)
		if ok, err := attempt(port); ok || err != nil {
			return port, err
		}
	}
	a.log.Debug("relay ports exhausted", "network", network, "bind", bind, "min", a.min, "max", a.max)
	return 0, fmt.Errorf("relay: %s relay on %s, ports %d-%d: %w", network, bind, a.min, a.max, ErrPortsExhausted)
}

// probeTCP binds a throwaway TCP socket with SO_REUSEADDR but without
// SO_REUSEPORT to bind:port. It fails with EADDRINUSE if any socket listens
// there (with or without SO_REUSEPORT) yet ignores TIME_WAIT and connected
// leftovers, which is exactly when a new relay listener may take the port.
// Together with tcpMu this keeps one allocator from handing a TCP port out
// twice.
func probeTCP(bind netip.Addr, port uint16) error {
	var domain int
	var sa unix.Sockaddr
	if bind.Is4() {
		domain, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(port), Addr: bind.As4()}
	} else {
		domain, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(port), Addr: bind.As16()}
	}
	// As the net package does where SOCK_CLOEXEC is missing (portable).
	syscall.ForkLock.RLock()
	fd, err := unix.Socket(domain, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return os.NewSyscallError("setsockopt", err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return os.NewSyscallError("bind", unix.Bind(fd, sa))
}
