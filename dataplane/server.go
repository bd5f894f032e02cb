package dataplane

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/listen"
	"github.com/ferryrtc/ferry/relay"
)

// Options is what New needs beyond the sockets.
type Options struct {
	// Engine configures the protocol core; Shards is set to Loops.
	Engine engine.Config
	// Credentials and Policy are the initial credentials and peer policy
	// (Shared swaps them later).
	Credentials *auth.Snapshot
	Policy      *relay.Policy
	// RelayV4 and RelayV6 are the addresses relay sockets bind to; an
	// invalid one turns that family's relays off.
	RelayV4, RelayV6 netip.Addr
	// Loops is the number of event loops (engine shards); every UDP socket
	// set has one socket per loop.
	Loops int
	// HandshakeTimeout bounds a TLS or DTLS handshake; 0 means 10 s.
	HandshakeTimeout time.Duration
	// ProxyTrusted are the peers whose PROXY protocol headers are believed
	// on StreamListeners with ProxyProtocol (proxy-protocol.trusted); a
	// connection from anyone else is closed unread.
	ProxyTrusted []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for a PROXY protocol header
	// (default 5s).
	ProxyHeaderTimeout time.Duration
	// Offload, if set, is the kernel fast path the engine hands
	// channel-bound UDP traffic to.
	Offload Offloader
	// Usage, if set, gets the usage record of every allocation that ends,
	// on an event loop: it must not block.
	Usage func(engine.AllocationInfo)
	// UserQuota, if set, is the cluster's count of allocations per user
	// (cluster.UserQuota): the engine asks it on each Allocate (from a
	// goroutine of its own: Acquire may wait for Redis) and tells it of
	// each end (Release must not block).
	UserQuota UserQuota
	// Log receives the server's logs; nil discards.
	Log *slog.Logger
}

// StreamListener is a TCP, TLS or DTLS listener and its transport.
type StreamListener struct {
	Listener  net.Listener
	Transport engine.Transport
	// ProxyProtocol: each connection starts with a PROXY protocol v2
	// header (listen.Stream.ProxyProtocol), whose source address is the
	// client's when the peer is one of Options.ProxyTrusted.
	ProxyProtocol bool
	// TLS, with ProxyProtocol, wraps each connection in TLS after the
	// header: Listener is then plain TCP (listen.Stream.TLS).
	TLS *tls.Config
}

// NATSockets are one primary UDP listener's RFC 5780 alternate sockets:
// A2:P1, A1:P2 and A2:P2.
type NATSockets struct {
	Primary netip.AddrPort
	Alt     [3]listen.UDPSocket
}

// Sockets are the client-facing sockets, opened by the caller. The server
// owns them from New on (also when New fails) and closes them in Close.
type Sockets struct {
	// UDP are the UDP listeners: one SO_REUSEPORT set per address, each
	// with Options.Loops sockets.
	UDP [][]listen.UDPSocket
	// Stream are the TCP, TLS and DTLS listeners.
	Stream []StreamListener
	// NAT are the RFC 5780 alternate sockets.
	NAT []NATSockets
}

// Offloader is the kernel fast path's table (package offload): the loops
// write it on the engine's commands and read its counts on every tick.
type Offloader interface {
	Put(engine.OffloadChannel) error
	Delete(engine.OffloadChannel) error
	Counters(engine.OffloadChannel) (engine.OffloadCounters, error)
}

// UserQuota is the cluster-wide per-user allocation count.
type UserQuota interface {
	Acquire(user string) (ok, counted bool)
	Release(user string)
}

// counters are the data plane's own drops, added to the engine's.
type counters struct {
	oversized    atomic.Uint64 // datagrams larger than datagramRx
	invalidFrame atomic.Uint64 // stream connections closed for broken framing
	sendDrops    atomic.Uint64 // datagrams the kernel did not take
	recvErrors   atomic.Uint64
	streamDrops  atomic.Uint64 // frames to a stream client whose queue was full
	offloadFails atomic.Uint64 // fast path entries the kernel refused (they stay in user space)
	offloaded    atomic.Int64  // fast path entries installed now
}

// Server is ferry's TURN server on its own engine.
type Server struct {
	sh    *engine.Shared
	log   *slog.Logger
	loops []*loop
	ports *ports
	opts  Options

	udp      []*udpSock // by SocketID, read-only after New
	udpOwned []listen.UDPSocket
	streamLs []StreamListener
	nextConn atomic.Uint32

	peersMu sync.Mutex
	peers   map[uint32]*peerConn

	counters counters
	proxy    proxyState // PROXY protocol admissions (proxy.go)
	gso      bool       // the kernel takes UDP_SEGMENT
	wg       sync.WaitGroup
	closing  atomic.Bool

	closeOnce sync.Once
}

// streamIDBase marks the SocketIDs of client connections.
const streamIDBase = 1 << 31

// New builds the server on s and starts its loops and listeners. On error
// every socket in s is closed.
func New(o Options, s Sockets) (*Server, error) {
	srv, err := build(o, s)
	if err != nil {
		for _, set := range s.UDP {
			for _, u := range set {
				_ = u.Close()
			}
		}
		for _, n := range s.NAT {
			for _, u := range n.Alt {
				_ = u.Close()
			}
		}
		for _, l := range s.Stream {
			_ = l.Listener.Close()
		}
		return nil, err
	}
	return srv, nil
}

func build(o Options, s Sockets) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Loops < 1 {
		return nil, errors.New("dataplane: no event loops")
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if len(s.UDP) == 0 && len(s.Stream) == 0 {
		return nil, errors.New("dataplane: no sockets to serve")
	}
	for _, set := range s.UDP {
		if len(set) != o.Loops {
			return nil, fmt.Errorf("dataplane: UDP set of %d sockets for %d loops", len(set), o.Loops)
		}
	}
	for _, ip := range []netip.Addr{o.RelayV4, o.RelayV6} {
		if ip.IsValid() {
			if err := listen.CheckBindable(ip); err != nil {
				return nil, fmt.Errorf("relay.ip: %w", err)
			}
		}
	}
	lo, hi := o.Engine.RelayMinPort, o.Engine.RelayMax
	srv := &Server{
		log:   o.Log,
		ports: newPorts(o.RelayV4, o.RelayV6, lo, hi),
		opts:  o,
		udp:   []*udpSock{nil}, // SocketID 0 is none
		peers: map[uint32]*peerConn{},
		gso:   gsoSupported(),
	}
	// Client-facing UDP sockets get SocketIDs 1..; set i's socket j is
	// read by loop j.
	addUDP := func(u listen.UDPSocket) *udpSock {
		us := &udpSock{fd: u.FD, id: engine.SocketID(len(srv.udp)), addr: u.Addr, info: u.PacketInfo, v6: u.Addr.Addr().Is6()}
		srv.udp = append(srv.udp, us)
		srv.udpOwned = append(srv.udpOwned, u)
		return us
	}
	var listeners [][]*udpSock
	primary := map[netip.AddrPort]*udpSock{}
	for _, set := range s.UDP {
		var socks []*udpSock
		for _, u := range set {
			socks = append(socks, addUDP(u))
		}
		listeners = append(listeners, socks)
		primary[set[0].Addr] = socks[0]
	}
	ec := o.Engine
	ec.Shards = o.Loops
	ec.Log = o.Log
	ec.RelayV4, ec.RelayV6 = o.RelayV4.IsValid(), o.RelayV6.IsValid()
	ec.Offload = o.Offload != nil
	var alts []*udpSock
	for _, n := range s.NAT {
		p := primary[n.Primary]
		if p == nil {
			return nil, fmt.Errorf("dataplane: RFC 5780 alternates for %s, which is no UDP listener", n.Primary)
		}
		set := engine.NATAddresses{Addr: [4]netip.AddrPort{p.addr}, Socket: [4]engine.SocketID{p.id}}
		for i, u := range n.Alt {
			a := addUDP(u)
			set.Addr[i+1], set.Socket[i+1] = a.addr, a.id
			alts = append(alts, a)
		}
		ec.NAT = append(ec.NAT, set)
	}
	sh, err := engine.NewShared(ec, o.Credentials, o.Policy, time.Now())
	if err == nil && o.UserQuota != nil {
		sh.SetClusterQuota(true)
	}
	if err != nil {
		return nil, err
	}
	srv.sh = sh
	for i := range o.Loops {
		eng, err := engine.New(sh, i)
		if err != nil {
			srv.closeLoops()
			return nil, err
		}
		l, err := newLoop(srv, i, eng)
		if err != nil {
			srv.closeLoops()
			return nil, fmt.Errorf("dataplane: event loop %d: %w", i, err)
		}
		srv.loops = append(srv.loops, l)
	}
	for _, socks := range listeners {
		for j, us := range socks {
			l := srv.loops[j]
			if err := l.watch(us.fd, evListener, len(l.listeners)); err != nil {
				srv.closeLoops()
				return nil, err
			}
			l.listeners = append(l.listeners, us)
		}
	}
	for _, a := range alts {
		l := srv.loops[0]
		if err := l.watch(a.fd, evListener, len(l.listeners)); err != nil {
			srv.closeLoops()
			return nil, err
		}
		l.listeners = append(l.listeners, a)
	}
	srv.streamLs = s.Stream
	for _, l := range srv.loops {
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			l.run()
		}()
	}
	for _, sl := range s.Stream {
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			srv.accept(sl)
		}()
	}
	return srv, nil
}

func (s *Server) closeLoops() {
	for _, l := range s.loops {
		l.closeFDs()
	}
}

// udpSocket returns the client-facing UDP socket id, or nil (a stream).
func (s *Server) udpSocket(id engine.SocketID) *udpSock {
	if int(id) < len(s.udp) {
		return s.udp[id]
	}
	return nil
}

// Shared returns the state the engine shards share: credentials, policy,
// drain switch and counters.
func (s *Server) Shared() *engine.Shared { return s.sh }

// AllocationCount returns the number of live allocations.
func (s *Server) AllocationCount() int { return s.sh.Allocations() }

// Drain stops granting allocations (508); existing ones keep relaying.
func (s *Server) Drain() { s.sh.Drain() }

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.sh.Draining() }

// SetCredentials swaps the credentials (reload).
func (s *Server) SetCredentials(c *auth.Snapshot) { s.sh.SetCredentials(c) }

// SetPolicy swaps the peer policy (ferry's own addresses changed).
func (s *Server) SetPolicy(p *relay.Policy) { s.sh.SetPolicy(p) }

// Stats returns the engine's counters with the data plane's drops added.
func (s *Server) Stats() engine.Snapshot {
	st := s.sh.Stats()
	st.Dropped[engine.DropOversized] += s.counters.oversized.Load()
	st.Dropped[engine.DropInvalidFrame] += s.counters.invalidFrame.Load()
	return st
}

// FastPathChannels returns the channels installed in the kernel fast path
// now and the installs the kernel refused so far (those channels relay in
// user space).
func (s *Server) FastPathChannels() (installed, refused uint64) {
	return uint64(max(0, s.counters.offloaded.Load())), s.counters.offloadFails.Load()
}

// List returns every live allocation, ordered by creation.
func (s *Server) List() []engine.AllocationInfo {
	var all []engine.AllocationInfo
	var mu sync.Mutex
	s.each(func(l *loop) {
		got := l.eng.List(nil, time.Now())
		mu.Lock()
		all = append(all, got...)
		mu.Unlock()
	})
	sort.Slice(all, func(i, j int) bool {
		if !all[i].Created.Equal(all[j].Created) {
			return all[i].Created.Before(all[j].Created)
		}
		return all[i].ID < all[j].ID
	})
	return all
}

// CloseRelay closes the allocations with relayed address relay; transport
// "udp", "tcp" or "" for both.
func (s *Server) CloseRelay(relay netip.AddrPort, transport string) int {
	var n atomic.Int64
	s.each(func(l *loop) {
		n.Add(int64(l.eng.CloseRelay(&l.out, relay, transport, time.Now())))
		l.flush()
	})
	return int(n.Load())
}

// CloseUser closes every allocation of user.
func (s *Server) CloseUser(user string) int {
	var n atomic.Int64
	s.each(func(l *loop) {
		n.Add(int64(l.eng.CloseUser(&l.out, user, time.Now())))
		l.flush()
	})
	return int(n.Load())
}

// SetRevocations puts r in force and closes the live allocations it hits;
// it returns how many.
func (s *Server) SetRevocations(r *engine.Revocations) int {
	s.sh.SetRevocations(r)
	var n atomic.Int64
	s.each(func(l *loop) {
		n.Add(int64(l.eng.CloseRevoked(&l.out, time.Now())))
		l.flush()
	})
	return int(n.Load())
}

// SetOverBudget puts the users whose byte budget is spent in force and
// closes their live allocations; it returns how many.
func (s *Server) SetOverBudget(users map[string]bool) int {
	s.sh.SetOverBudget(users)
	if len(users) == 0 {
		return 0
	}
	var n atomic.Int64
	s.each(func(l *loop) {
		n.Add(int64(l.eng.CloseOverBudget(&l.out, time.Now())))
		l.flush()
	})
	return int(n.Load())
}

// each runs fn on every loop and waits.
func (s *Server) each(fn func(*loop)) {
	var wg sync.WaitGroup
	for _, l := range s.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.call(fn)
		}()
	}
	wg.Wait()
}

// Listening returns nil while the server serves, else why not.
func (s *Server) Listening() error {
	if s.closing.Load() {
		return errors.New("server closed")
	}
	for _, l := range s.loops {
		select {
		case <-l.done:
			return fmt.Errorf("event loop %d stopped", l.idx)
		default:
		}
	}
	return nil
}

// Close ends every allocation, closes every socket and waits for the
// loops and connection goroutines (at most a few seconds). It is safe to
// call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		for _, sl := range s.streamLs {
			_ = sl.Listener.Close()
		}
		s.proxy.closeAll()
		s.each(func(l *loop) {
			l.eng.CloseAll(&l.out, time.Now())
			l.flush()
			for i := range l.relays {
				if r, ok := l.dropRelay(i); ok {
					l.closeRelay(r)
				}
			}
			for _, sc := range l.streams {
				sc.close()
			}
			l.closing.Store(true)
		})
		for _, l := range s.loops {
			<-l.done
			l.closeFDs()
		}
		for _, u := range s.udpOwned {
			_ = u.Close()
		}
		s.peersMu.Lock()
		for id, p := range s.peers {
			_ = p.conn.Close()
			delete(s.peers, id)
		}
		s.peersMu.Unlock()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.log.Warn("close: connection goroutines still running after 5s")
		}
	})
	return nil
}
