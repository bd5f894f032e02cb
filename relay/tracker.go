package relay

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
)

// Compile-time interface guards.
var (
	_ net.PacketConn = (*trackedPacketConn)(nil)
	_ net.Listener   = (*trackedListener)(nil)
	_ net.Conn       = (*trackedConn)(nil)
)

// ErrNoAllocation is returned by Tracker.Close when no live allocation has
// the given relay address.
var ErrNoAllocation = errors.New("no live allocation with that relay address")

// Relay transports, as listed and counted.
const (
	TransportUDP = "udp"
	TransportTCP = "tcp"
)

// Address families, as listed and counted.
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// End causes of an allocation, as counted in Stats.Ended.
const (
	// EndExpired: pion deleted the allocation: its lifetime ran out, the
	// client released it (Refresh with LIFETIME 0), its TCP connection
	// closed, or the server shut down. pion does not tell these apart.
	EndExpired = "expired"
	// EndAdmin: closed through Tracker.Close or Tracker.CloseUser.
	EndAdmin = "admin"
)

// TrackerOptions configures a Tracker.
type TrackerOptions struct {
	// ClientTransport names the client-facing transport ("udp", "tcp",
	// "tls", "dtls") of an allocation from the local address of the listener
	// the client reached (pion's 5-tuple destination). Nil: "udp" or "tcp"
	// from the address type.
	ClientTransport func(local net.Addr) string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives debug lines; nil discards.
	Log *slog.Logger
}

// Tracker keeps per-allocation relay accounting. The PortAllocator wraps
// every relay socket it hands to pion with a Tracker wrapper that counts
// packets and bytes in each direction with atomics on that allocation's own
// state: the per-packet path takes no lock and allocates nothing. pion's
// allocation events (Events) join the relay address to the client 5-tuple
// and user and keep each allocation's permitted peers, so packets from peers
// without a permission, which pion drops, are counted as dropped rather than
// relayed. Closing a relay socket makes pion delete its allocation, which
// is how Close and CloseUser end allocations from outside.
//
// A Tracker is safe for concurrent use. Share one per process.
type Tracker struct {
	clientTransport func(net.Addr) string
	now             func() time.Time
	log             *slog.Logger

	mu      sync.Mutex // allocation lifecycle, events, listing; never per packet
	live    map[relayKey]*tracked
	ended   Traffic           // folded counters of closed allocations
	created map[Class]uint64  // allocations created, by class
	endings map[string]uint64 // allocations ended, by End* cause
	drops   uint64            // dropped packets of closed allocations
}

// NewTracker returns an empty Tracker.
func NewTracker(o TrackerOptions) *Tracker {
	if o.ClientTransport == nil {
		o.ClientTransport = addrTransport
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Tracker{
		clientTransport: o.ClientTransport,
		now:             o.Now,
		log:             o.Log,
		live:            map[relayKey]*tracked{},
		created:         map[Class]uint64{},
		endings:         map[string]uint64{EndExpired: 0, EndAdmin: 0},
	}
}

// addrTransport is the default ClientTransport.
func addrTransport(a net.Addr) string {
	if _, ok := a.(*net.TCPAddr); ok {
		return TransportTCP
	}
	return TransportUDP
}

// Class is what allocations are counted by.
type Class struct {
	// Transport is the client-facing transport: udp, tcp, tls or dtls.
	Transport string
	// Family is the relay address family: ipv4 or ipv6.
	Family string
}

// Traffic is relayed traffic in both directions.
type Traffic struct {
	// ToPeer counts what clients sent to peers through the relay.
	ToPeerPackets uint64 `json:"to_peer_packets"`
	ToPeerBytes   uint64 `json:"to_peer_bytes"`
	// FromPeer counts what peers sent that was relayed to clients.
	FromPeerPackets uint64 `json:"from_peer_packets"`
	FromPeerBytes   uint64 `json:"from_peer_bytes"`
}

func (t *Traffic) add(o Traffic) {
	t.ToPeerPackets += o.ToPeerPackets
	t.ToPeerBytes += o.ToPeerBytes
	t.FromPeerPackets += o.FromPeerPackets
	t.FromPeerBytes += o.FromPeerBytes
}

// Allocation describes one live allocation.
type Allocation struct {
	// User is the user ID pion's AuthHandler returned; Realm its realm.
	User  string `json:"user"`
	Realm string `json:"realm"`
	// Client is the client's address and Server the ferry address it
	// reached: with Transport, the client 5-tuple.
	Client    string `json:"client"`
	Server    string `json:"server"`
	Transport string `json:"transport"`
	// Relay is the relay transport address given to the client
	// (XOR-RELAYED-ADDRESS) and RelayTransport its protocol (udp; tcp for
	// RFC 6062 allocations).
	Relay          string `json:"relay"`
	RelayTransport string `json:"relay_transport"`
	Family         string `json:"family"`
	// Created is when pion created the allocation; Age how long ago.
	Created    time.Time `json:"created"`
	AgeSeconds float64   `json:"age_seconds"`
	Traffic
	// DroppedPackets counts packets from peers without a permission.
	DroppedPackets uint64 `json:"dropped_packets"`
}

// Stats is a point-in-time summary for metrics.
type Stats struct {
	// Traffic is every byte relayed since the Tracker was made, by live and
	// closed allocations.
	Traffic Traffic
	// Dropped counts packets from peers without a permission (pion drops
	// them), live and closed allocations.
	Dropped uint64
	// Active counts live allocations; Created every allocation made; Ended
	// ended allocations by End* cause.
	Active  map[Class]int
	Created map[Class]uint64
	Ended   map[string]uint64
}

// relayKey names a relay socket: its advertised address and protocol.
type relayKey struct {
	tcp  bool
	addr netip.AddrPort
}

func keyOf(a net.Addr) (relayKey, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return relayKey{addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, ap.IsValid()
	case *net.TCPAddr:
		ap := a.AddrPort()
		return relayKey{tcp: true, addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, ap.IsValid()
	}
	return relayKey{}, false
}

// cacheLine pads the per-direction counters apart: the relay read
// goroutine writes fromPeer, the client-facing read loop writes toPeer.
const cacheLine = 128

type dirCounters struct {
	packets atomic.Uint64
	bytes   atomic.Uint64
	_       [cacheLine - 16]byte
}

func (d *dirCounters) count(n int) {
	d.packets.Add(1)
	d.bytes.Add(uint64(n))
}

// uncount takes back a count(n) whose send failed.
func (d *dirCounters) uncount(n int) {
	d.packets.Add(^uint64(0))
	d.bytes.Add(^uint64(n - 1))
}

// peerSet is an allocation's permitted peers, replaced whole on every
// change and read with one atomic load per packet.
type peerSet struct {
	ips   []netip.Addr     // permissions (by IP, as pion keeps them)
	chans []netip.AddrPort // channel peers (pion relays on a channel even after its permission expired)
}

func (p *peerSet) permits(ap netip.AddrPort) bool {
	ip := ap.Addr().Unmap()
	for _, a := range p.ips {
		if a == ip {
			return true
		}
	}
	ap = netip.AddrPortFrom(ip, ap.Port())
	for _, c := range p.chans {
		if c == ap {
			return true
		}
	}
	return false
}

// tracked is one relay socket's state.
type tracked struct {
	toPeer   dirCounters
	fromPeer dirCounters
	dropped  atomic.Uint64
	peers    atomic.Pointer[peerSet]

	tr     *Tracker
	key    relayKey
	closer interface{ Close() error } // the real socket
	admin  atomic.Bool                // closed by Close/CloseUser

	closeOnce sync.Once
	closeErr  error

	// Set under tr.mu.
	joined  bool
	info    Allocation
	class   Class
	perms   map[netip.Addr]struct{}
	chans   map[netip.AddrPort]struct{}
	removed bool
}

func (a *tracked) traffic() Traffic {
	return Traffic{
		ToPeerPackets:   a.toPeer.packets.Load(),
		ToPeerBytes:     a.toPeer.bytes.Load(),
		FromPeerPackets: a.fromPeer.packets.Load(),
		FromPeerBytes:   a.fromPeer.bytes.Load(),
	}
}

// close closes the real socket once and retires the entry.
func (a *tracked) close() error {
	a.closeOnce.Do(func() {
		a.closeErr = a.closer.Close()
		a.tr.remove(a)
	})
	return a.closeErr
}

// register adds a relay socket under its advertised address.
func (t *Tracker) register(relayAddr net.Addr, closer interface{ Close() error }) *tracked {
	a := &tracked{tr: t, closer: closer}
	a.peers.Store(&peerSet{})
	key, ok := keyOf(relayAddr)
	a.key = key
	if !ok {
		a.removed = true // never listed
		return a
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.live[key]; old != nil {
		// Cannot happen while the old socket holds the port; keep the
		// newest so events reach the socket pion uses.
		t.log.Warn("relay tracker: relay address registered twice", "relay", key.addr)
		old.removed = true
	}
	t.live[key] = a
	return a
}

// remove folds a closed entry's counters into the totals.
func (t *Tracker) remove(a *tracked) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a.removed {
		return
	}
	a.removed = true
	if t.live[a.key] == a {
		delete(t.live, a.key)
	}
	if !a.joined {
		return // a socket pion probed for EVEN-PORT, or never used
	}
	t.ended.add(a.traffic())
	t.drops += a.dropped.Load()
	cause := EndExpired
	if a.admin.Load() {
		cause = EndAdmin
	}
	t.endings[cause]++
	t.log.Debug("relay tracker: allocation ended", "relay", a.info.Relay, "user", a.info.User, "cause", cause)
}

// lookup returns the live entry for a relay address, or nil. Caller holds mu.
func (t *Tracker) lookup(relayAddr net.Addr) *tracked {
	key, ok := keyOf(relayAddr)
	if !ok {
		return nil
	}
	return t.live[key]
}

// WrapPacketConn wraps a UDP relay socket whose advertised address is
// relayAddr. A nil Tracker returns pc unchanged.
func (t *Tracker) WrapPacketConn(pc net.PacketConn, relayAddr net.Addr) net.PacketConn {
	if t == nil {
		return pc
	}
	return &trackedPacketConn{PacketConn: pc, a: t.register(relayAddr, pc)}
}

// WrapListener wraps a TCP relay listener (RFC 6062) whose advertised
// address is relayAddr; accepted peer connections are counted too. A nil
// Tracker returns l unchanged.
func (t *Tracker) WrapListener(l net.Listener, relayAddr net.Addr) net.Listener {
	if t == nil {
		return l
	}
	return &trackedListener{Listener: l, a: t.register(relayAddr, l)}
}

// WrapConn wraps a peer connection dialed for an RFC 6062 Connect from the
// TCP allocation with advertised address relayAddr, counting it with that
// allocation. Unknown allocations and a nil Tracker return c unchanged.
func (t *Tracker) WrapConn(c net.Conn, relayAddr net.Addr) net.Conn {
	if t == nil {
		return c
	}
	t.mu.Lock()
	a := t.lookup(relayAddr)
	t.mu.Unlock()
	if a == nil {
		return c
	}
	return &trackedConn{Conn: c, a: a}
}

// Events returns pion event callbacks that join allocations to their
// client and user and follow their permissions and channels. Chain them
// into the server's EventHandler. A nil Tracker returns no callbacks.
func (t *Tracker) Events() turn.EventHandler {
	if t == nil {
		return turn.EventHandler{}
	}
	return turn.EventHandler{
		OnAllocationCreated: t.allocationCreated,
		OnPermissionCreated: func(_, _ net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
			t.permission(relayAddr, peer, true)
		},
		OnPermissionDeleted: func(_, _ net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
			t.permission(relayAddr, peer, false)
		},
		OnChannelCreated: func(_, _ net.Addr, _, _, _ string, relayAddr, peer net.Addr, _ uint16) {
			t.channel(relayAddr, peer, true)
		},
		OnChannelDeleted: func(_, _ net.Addr, _, _, _ string, relayAddr, peer net.Addr, _ uint16) {
			t.channel(relayAddr, peer, false)
		},
	}
}

func (t *Tracker) allocationCreated(src, dst net.Addr, _, user, realm string, relayAddr net.Addr, _ int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.lookup(relayAddr)
	if a == nil || a.joined {
		return
	}
	a.joined = true
	family := FamilyIPv4
	if a.key.addr.Addr().Is6() {
		family = FamilyIPv6
	}
	relayTransport := TransportUDP
	if a.key.tcp {
		relayTransport = TransportTCP
	}
	a.class = Class{Transport: t.clientTransport(dst), Family: family}
	a.info = Allocation{
		User:           user,
		Realm:          realm,
		Client:         addrString(src),
		Server:         addrString(dst),
		Transport:      a.class.Transport,
		Relay:          a.key.addr.String(),
		RelayTransport: relayTransport,
		Family:         family,
		Created:        t.now(),
	}
	t.created[a.class]++
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func (t *Tracker) permission(relayAddr net.Addr, peer net.IP, add bool) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	ip = ip.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.lookup(relayAddr)
	if a == nil {
		return
	}
	setMember(&a.perms, ip, add)
	a.publishPeers()
}

func (t *Tracker) channel(relayAddr, peer net.Addr, add bool) {
	ua, ok := peer.(*net.UDPAddr)
	if !ok {
		return
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.lookup(relayAddr)
	if a == nil {
		return
	}
	setMember(&a.chans, ap, add)
	a.publishPeers()
}

// setMember adds k to the set *m (making it on first use) or removes it.
func setMember[K comparable](m *map[K]struct{}, k K, add bool) {
	if !add {
		delete(*m, k)
		return
	}
	if *m == nil {
		*m = map[K]struct{}{}
	}
	(*m)[k] = struct{}{}
}

// publishPeers swaps in a new peer set. Caller holds tr.mu.
func (a *tracked) publishPeers() {
	ps := &peerSet{
		ips:   make([]netip.Addr, 0, len(a.perms)),
		chans: make([]netip.AddrPort, 0, len(a.chans)),
	}
	for ip := range a.perms {
		ps.ips = append(ps.ips, ip)
	}
	for ap := range a.chans {
		ps.chans = append(ps.chans, ap)
	}
	a.peers.Store(ps)
}

// List returns the live allocations, oldest first.
func (t *Tracker) List() []Allocation {
	if t == nil {
		return nil
	}
	now := t.now()
	t.mu.Lock()
	out := make([]Allocation, 0, len(t.live))
	for _, a := range t.live {
		if !a.joined {
			continue
		}
		info := a.info
		info.Traffic = a.traffic()
		info.DroppedPackets = a.dropped.Load()
		info.AgeSeconds = now.Sub(info.Created).Seconds()
		out = append(out, info)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(x, y Allocation) int {
		if c := x.Created.Compare(y.Created); c != 0 {
			return c
		}
		return cmp.Compare(x.Relay, y.Relay)
	})
	return out
}

// Close closes the live allocations with relay address relay: the one of
// the given relay transport ("udp" or "tcp"), or of either when transport
// is empty. pion then deletes them and the clients' next requests fail. It
// returns how many were closed, wrapping ErrNoAllocation when none was.
func (t *Tracker) Close(relay netip.AddrPort, transport string) (int, error) {
	relay = netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())
	n := t.closeWhere(func(a *tracked) bool {
		return a.key.addr == relay && (transport == "" ||
			transport == TransportTCP && a.key.tcp || transport == TransportUDP && !a.key.tcp)
	})
	if n == 0 {
		return 0, fmt.Errorf("relay %s: %w", relay, ErrNoAllocation)
	}
	return n, nil
}

// CloseUser closes every live allocation of user and returns how many.
func (t *Tracker) CloseUser(user string) int {
	return t.closeWhere(func(a *tracked) bool { return a.info.User == user })
}

func (t *Tracker) closeWhere(match func(*tracked) bool) int {
	if t == nil {
		return 0
	}
	var victims []*tracked
	t.mu.Lock()
	for _, a := range t.live {
		if a.joined && match(a) {
			a.admin.Store(true)
			victims = append(victims, a)
		}
	}
	t.mu.Unlock()
	for _, a := range victims {
		if err := a.close(); err != nil {
			t.log.Warn("relay tracker: close relay socket", "relay", a.info.Relay, "err", err)
		}
		t.log.Info("allocation closed by admin", "relay", a.info.Relay, "user", a.info.User, "client", a.info.Client)
	}
	return len(victims)
}

// Stats sums the counters of live and closed allocations. Counters only
// grow between calls.
func (t *Tracker) Stats() Stats {
	s := Stats{Active: map[Class]int{}, Created: map[Class]uint64{}, Ended: map[string]uint64{}}
	if t == nil {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Traffic = t.ended
	s.Dropped = t.drops
	for _, a := range t.live {
		if !a.joined {
			continue
		}
		s.Traffic.add(a.traffic())
		s.Dropped += a.dropped.Load()
		s.Active[a.class]++
	}
	for c, n := range t.created {
		s.Created[c] = n
	}
	for c, n := range t.endings {
		s.Ended[c] = n
	}
	return s
}

// trackedPacketConn counts a UDP relay socket. pion reads it from one
// goroutine per allocation and writes it from the client's read loop.
type trackedPacketConn struct {
	net.PacketConn
	a *tracked
}

// ReadFrom reads a datagram from a peer, counting it as relayed when the
// peer has a permission or channel and as dropped otherwise (pion drops it).
func (c *trackedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		if ua, ok := addr.(*net.UDPAddr); ok && c.a.peers.Load().permits(ua.AddrPort()) {
			c.a.fromPeer.count(n)
		} else {
			c.a.dropped.Add(1)
		}
	}
	return n, addr, err
}

// WriteTo sends a client's datagram to a peer. It counts before sending
// (and takes the count back if the send fails): the peer's answer can reach
// the client before WriteTo returns, and a scrape must never see the answer
// without the datagram that caused it.
func (c *trackedPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	c.a.toPeer.count(len(p))
	n, err := c.PacketConn.WriteTo(p, addr)
	if err != nil {
		c.a.toPeer.uncount(len(p))
	}
	return n, err
}

// Close closes the socket (once) and retires the allocation's entry.
func (c *trackedPacketConn) Close() error { return c.a.close() }

// trackedListener is a TCP relay listener.
type trackedListener struct {
	net.Listener
	a *tracked
}

// Accept returns the next inbound peer connection, counted.
func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c, a: l.a}, nil
}

// Close closes the listener (once) and retires the allocation's entry.
func (l *trackedListener) Close() error { return l.a.close() }

// trackedConn is a TCP peer connection of an RFC 6062 allocation; each
// Read or Write counts as one packet.
type trackedConn struct {
	net.Conn
	a *tracked
}

// Read reads peer data bound for the client.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.a.fromPeer.count(n)
	}
	return n, err
}

// Write sends client data to the peer.
func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.a.toPeer.count(n)
	}
	return n, err
}
