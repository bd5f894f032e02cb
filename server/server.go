package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/edge"
	"github.com/ferryrtc/ferry/relay"
	"github.com/ferryrtc/ferry/rfc5780"
)

// Options is what New needs beyond the sockets.
type Options struct {
	// Config is the validated configuration.
	Config config.Config
	// RelayV4 and RelayV6 are the addresses relay sockets bind to, resolved
	// by the caller (configured or detected); an invalid one turns that
	// family's relays off.
	RelayV4, RelayV6 netip.Addr
	// Self lists ferry's own addresses (listeners, interfaces); relaying to
	// them is refused.
	Self []netip.Addr
	// Auth authenticates requests; the caller keeps it to swap snapshots on
	// reload.
	Auth *auth.Authenticator
	// Log receives ferry's and pion's logs.
	Log *slog.Logger
	// Events, if set, also receives pion's allocation lifecycle events
	// (metrics, admin bookkeeping), after ferry's own logging.
	Events turn.EventHandler
	// Alternates are the RFC 5780 alternate sockets of UDP listeners, keyed
	// by the listener's bound address, opened by the caller. The server owns
	// them from New on (also when New fails). UDP sockets without an entry
	// answer Binding requests without OTHER-ADDRESS and CHANGE-REQUEST with
	// 420.
	Alternates map[netip.AddrPort]rfc5780.Alternates
	// Tracker, if set, wraps every relay socket to count and list
	// allocations; its pion event callbacks run before Events.
	Tracker *relay.Tracker
	// Observer, if set, is told of refused credentials, refused allocations
	// and denied peers, which pion's events do not carry (metrics).
	Observer Observer
}

// Sockets are the client-facing sockets, opened by the caller. The server
// owns them from New on and closes them in Close (or when New fails).
type Sockets struct {
	// Packet are UDP sockets (several per address with SO_REUSEPORT).
	Packet []net.PacketConn
	// Stream are TCP, TLS and DTLS listeners.
	Stream []net.Listener
}

// Server is a running ferry TURN server.
type Server struct {
	turn    *turn.Server
	log     *slog.Logger
	policy  *relay.Policy
	ports   *relay.PortAllocator
	edge    *edge.Counters
	stun    *rfc5780.Counters
	stunRs  []*rfc5780.Responder
	started time.Time
	prot    protections
	gate    *gate
	tracker *relay.Tracker
	sockets Sockets
	closed  atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// New builds and starts the server on the given sockets. On error every
// socket is closed.
func New(o Options, s Sockets) (*Server, error) {
	srv, err := build(o, s)
	if err != nil {
		for _, pc := range s.Packet {
			_ = pc.Close()
		}
		for _, l := range s.Stream {
			_ = l.Close()
		}
		for _, a := range o.Alternates {
			_ = a.Close() // no-op for those a Responder already closed
		}
		return nil, err
	}
	return srv, nil
}

func build(o Options, s Sockets) (_ *Server, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Auth == nil {
		return nil, errors.New("server: no authenticator")
	}
	if len(s.Packet) == 0 && len(s.Stream) == 0 {
		return nil, errors.New("server: no sockets to serve")
	}
	cfg := o.Config
	allowed, err := config.ParsePrefixes(cfg.Relay.AllowedPeers)
	if err != nil {
		return nil, fmt.Errorf("relay.allowed-peers: %w", err)
	}
	denied, err := config.ParsePrefixes(cfg.Relay.DeniedPeers)
	if err != nil {
		return nil, fmt.Errorf("relay.denied-peers: %w", err)
	}
	ext4, ext6, err := cfg.Relay.ExternalIPs()
	if err != nil {
		return nil, fmt.Errorf("relay.external-ip: %w", err)
	}
	lo, hi, err := cfg.Relay.PortRange()
	if err != nil {
		return nil, fmt.Errorf("relay.ports: %w", err)
	}
	self := append([]netip.Addr(nil), o.Self...)
	for _, a := range []netip.Addr{o.RelayV4, o.RelayV6, ext4, ext6} {
		if a.IsValid() {
			self = append(self, a)
		}
	}
	var ownRelays []netip.Addr
	for _, a := range []netip.Addr{o.RelayV4, o.RelayV6, ext4, ext6} {
		if a.IsValid() && !a.IsUnspecified() {
			ownRelays = append(ownRelays, a)
		}
	}
	policy, err := relay.NewPolicy(relay.PolicyOptions{
		AllowLoopback: cfg.Relay.AllowLoopbackPeers,
		Allowed:       allowed,
		Denied:        denied,
		Self:          self,
		Relays:        ownRelays,
		RelayMinPort:  lo,
		RelayMaxPort:  hi,
	})
	if err != nil {
		return nil, fmt.Errorf("peer policy: %w", err)
	}
	prot, err := newProtections(cfg, o.Auth, o.Log)
	if err != nil {
		return nil, err
	}
	ports, err := relay.NewPortAllocator(relay.PortAllocatorConfig{
		Bind4:      o.RelayV4,
		Bind6:      o.RelayV6,
		Advertise4: ext4,
		Advertise6: ext6,
		MinPort:    lo,
		MaxPort:    hi,
		Policy:     policy,
		Log:        o.Log,
		Tracker:    o.Tracker,
		Quota:      prot.quota,
	})
	if err != nil {
		return nil, fmt.Errorf("relay ports: %w", err)
	}
	relays := &gate{ports: ports, obs: o.Observer}

	counters := &edge.Counters{}
	eo := edge.Options{
		Software: cfg.Software,
		Screen:   observeScreen(o.Auth.Screen, o.Observer),
		Gate:     prot.gate.Check,
		Sign:     prot.gate.Sign,
		Refuse:   o.Auth.Refuse,
		Guard:    prot.guard,
		Counters: counters,
		Log:      o.Log,
	}
	stunCounters := &rfc5780.Counters{}
	responders, err := newResponders(o, s.Packet, stunCounters)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			for _, r := range responders {
				_ = r.Close()
			}
		}
	}()
	perm := relay.NewPermissionHandler(policy, o.Log, peerDenied(o.Observer))
	sc := turn.ServerConfig{
		LoggerFactory:      pionLoggerFactory{log: o.Log},
		Realm:              cfg.Realm,
		AuthHandler:        observeAuth(o.Auth.Handler(), o.Observer),
		EventHandler:       events(o.Log, joinEvents(o.Tracker.Events(), prot.gate.Events(), observerEvents(o.Observer), o.Events)),
		QuotaHandler:       relay.NewQuotaHandler(prot.quota, quotaRefused(o.Observer)),
		AllocationLifetime: cfg.Relay.AllocationLifetime,
	}
	for _, pc := range s.Packet {
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn:            responders[localAddrPort(pc)].Wrap(edge.WrapPacketConn(pc, eo)),
			RelayAddressGenerator: relays,
			PermissionHandler:     perm,
		})
	}
	for _, l := range s.Stream {
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
			Listener:              edge.WrapListener(l, eo),
			RelayAddressGenerator: relays,
			PermissionHandler:     perm,
		})
	}
	ts, err := turn.NewServer(sc)
	if err != nil {
		return nil, fmt.Errorf("start TURN server: %w", err)
	}
	rs := make([]*rfc5780.Responder, 0, len(responders))
	for _, r := range responders {
		rs = append(rs, r)
	}
	return &Server{
		turn:    ts,
		log:     o.Log,
		policy:  policy,
		ports:   ports,
		edge:    counters,
		stun:    stunCounters,
		stunRs:  rs,
		started: time.Now(),
		prot:    prot,
		gate:    relays,
		tracker: o.Tracker,
		sockets: s,
	}, nil
}

// newResponders builds one RFC 5780 responder per UDP listener address,
// with that listener's alternates. Alternates of no listener are closed.
func newResponders(o Options, packet []net.PacketConn, c *rfc5780.Counters) (map[netip.AddrPort]*rfc5780.Responder, error) {
	out := map[netip.AddrPort]*rfc5780.Responder{}
	for _, pc := range packet {
		key := localAddrPort(pc)
		if out[key] != nil {
			continue
		}
		r, err := rfc5780.New(rfc5780.Options{
			Alternates: o.Alternates[key],
			Software:   o.Config.Software,
			Counters:   c,
			Log:        o.Log,
		})
		if err != nil {
			for _, r := range out {
				_ = r.Close()
			}
			return nil, fmt.Errorf("RFC 5780 alternates of %s: %w", key, err)
		}
		out[key] = r
	}
	for key, a := range o.Alternates {
		if out[key] == nil {
			o.Log.Warn("RFC 5780 alternates for an address with no UDP socket; closing them", "address", key)
			_ = a.Close()
		}
	}
	return out, nil
}

// localAddrPort is pc's local address, unmapped; the zero AddrPort if it
// is not an IP address.
func localAddrPort(pc net.PacketConn) netip.AddrPort {
	ap, err := netip.ParseAddrPort(pc.LocalAddr().String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// AllocationCount returns the number of live allocations.
func (s *Server) AllocationCount() int { return s.turn.AllocationCount() }

// EdgeCounters returns the client-facing packet counters.
func (s *Server) EdgeCounters() *edge.Counters { return s.edge }

// STUNCounters returns the counters of the RFC 5780 Binding responders.
func (s *Server) STUNCounters() *rfc5780.Counters { return s.stun }

// Policy returns the peer address policy in force.
func (s *Server) Policy() *relay.Policy { return s.policy }

// Close closes every socket and allocation. It is safe to call more than
// once; later calls return the first result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		errs := []error{s.turn.Close()}
		for _, r := range s.stunRs {
			errs = append(errs, r.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// failedLogRate and failedLogBurst bound the "request failed" debug lines.
const (
	failedLogRate  = 20 // lines per second, sustained
	failedLogBurst = 50
)

// events logs allocation lifecycle at info (one line per allocation created
// and deleted, nothing per packet), and refused credentials and failed
// requests with pion's reason at debug, and forwards to next. Failed
// requests include ChannelData for a gone allocation, one per datagram, so
// at most failedLogRate of those lines a second are written; the next line
// says how many were left out.
func events(log *slog.Logger, next turn.EventHandler) turn.EventHandler {
	failed := rate.NewLimiter(failedLogRate, failedLogBurst)
	var suppressed atomic.Uint64
	return turn.EventHandler{
		OnAuth: func(src, dst net.Addr, proto, username, realm, method string, verdict bool) {
			if !verdict {
				log.Debug("authentication failed", "client", src, "listener", dst, "transport", proto,
					"username", username, "method", method)
			}
			if next.OnAuth != nil {
				next.OnAuth(src, dst, proto, username, realm, method, verdict)
			}
		},
		OnAllocationCreated: func(src, dst net.Addr, proto, user, realm string, relayAddr net.Addr, reqPort int) {
			log.Info("allocation created", "client", src, "listener", dst, "transport", proto,
				"user", user, "relay", relayAddr)
			if next.OnAllocationCreated != nil {
				next.OnAllocationCreated(src, dst, proto, user, realm, relayAddr, reqPort)
			}
		},
		OnAllocationDeleted: func(src, dst net.Addr, proto, user, realm string) {
			log.Info("allocation deleted", "client", src, "listener", dst, "transport", proto, "user", user)
			if next.OnAllocationDeleted != nil {
				next.OnAllocationDeleted(src, dst, proto, user, realm)
			}
		},
		OnAllocationError: func(src, dst net.Addr, proto, msg string) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				if failed.Allow() {
					log.Debug("request failed", "client", src, "listener", dst, "error", msg,
						"not_logged_before", suppressed.Swap(0))
				} else {
					suppressed.Add(1)
				}
			}
			if next.OnAllocationError != nil {
				next.OnAllocationError(src, dst, proto, msg)
			}
		},
		OnPermissionCreated: next.OnPermissionCreated,
		OnPermissionDeleted: next.OnPermissionDeleted,
		OnChannelCreated:    next.OnChannelCreated,
		OnChannelDeleted:    next.OnChannelDeleted,
	}
}
