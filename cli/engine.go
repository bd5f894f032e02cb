package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"

	"github.com/ferryrtc/ferry/admin"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/dataplane"
	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/internal/netwatch"
	"github.com/ferryrtc/ferry/listen"
	"github.com/ferryrtc/ferry/metrics"
)

// turnServer is what serve needs of the TURN server.
type turnServer interface {
	AllocationCount() int
	Drain()
	Draining() bool
	Listening() error
	Close() error
	// Stats returns the engine's counters (the test page's /v1/status).
	Stats() engine.Snapshot
}

// started is a running TURN server and what the HTTP listener serves
// about it.
type started struct {
	srv     turnServer
	node    *clusterNode // nil without a cluster
	bound   []config.Listener
	metrics http.Handler
	admin   func(config.Config, *slog.Logger) (*admin.Handler, error)
}

// start opens the sockets and starts the engine and its data plane on them.
func start(ctx context.Context, cfg config.Config, ls []config.Listener, certs *listen.Certs,
	relay4, relay6 netip.Addr, ifAddrs []netip.Addr, st *runtimeState, log *slog.Logger) (*started, error) {
	loops := cfg.UDPSockets
	if loops == 0 {
		loops = defaultLoops(runtime.GOMAXPROCS(0))
	}
	skip := func(l config.Listener, err error) bool {
		if cfg.DefaultListen() && l.Addr.Addr().Is6() && listen.Unavailable(err) {
			log.Warn("IPv6 is not available on this host; serving IPv4 only", "listener", l.String(), "err", err)
			return true
		}
		return false
	}
	set, bound, err := listen.Open(ctx, ls, certs, loops, skip)
	if err != nil {
		return nil, &exitError{code: 1, err: err}
	}
	nat, err := openNATSockets(cfg, bound)
	if err != nil {
		set.Close()
		return nil, &exitError{code: 1, err: err}
	}
	self := append([]netip.Addr(nil), ifAddrs...)
	for _, l := range bound {
		self = append(self, l.Addr.Addr())
	}
	opts, err := dataplane.OptionsFrom(cfg, relay4, relay6, self)
	if err != nil {
		set.Close()
		closeNAT(nat)
		return nil, &exitError{code: 2, err: err}
	}
	opts.Credentials = st.authn.Snapshot()
	opts.Loops = loops
	opts.Log = log
	usage := newUsageRecords(cfg)
	client, nodeID, err := dialCluster(cfg, log)
	if err != nil {
		set.Close()
		closeNAT(nat)
		return nil, err
	}
	budget := newByteBudget(cfg, client, log)
	opts.Usage = func(info engine.AllocationInfo) {
		usage.ended(info)
		budget.allocationEnded(info)
	}
	var srv *dataplane.Server
	quota := newUserQuota(cfg, client, nodeID, &srv, log)
	if quota != nil {
		opts.UserQuota = quota
	}
	fp := openFastPath(cfg, bound, relay4, relay6, log)
	if fp != nil {
		opts.Offload = fastPath{fp}
	}
	srv, err = dataplane.New(opts, dataplane.SocketsFrom(set, nat))
	if err != nil {
		if fp != nil {
			_ = fp.Close()
		}
		if client != nil {
			_ = client.Close()
		}
		return nil, &exitError{code: 1, err: err}
	}
	if s := cfg.Cluster.NonceSecret; s != "" {
		srv.Shared().SetNonceKey(nonceKey(s))
	}
	node, err := joinCluster(cfg, client, nodeID, quota, srv, bound, relay4, relay6, log)
	if err != nil {
		_ = srv.Close()
		if fp != nil {
			_ = fp.Close()
		}
		return nil, err
	}
	revs := openRevocations(node, cfg.Cluster.KeyPrefix, srv, log)
	var clusterAdmin admin.Cluster
	if node != nil {
		clusterAdmin = node.admin(cfg.Cluster.KeyPrefix, srv, log)
	}
	if err := usage.start(cfg, srv, log); err != nil {
		node.leave()
		_ = srv.Close()
		if fp != nil {
			_ = fp.Close()
		}
		return nil, &exitError{code: 2, err: err}
	}
	budget.start(srv, log)
	var ts turnServer = withFastPath{Server: srv, fp: fp}
	var cm metrics.Cluster
	var cq metrics.ClusterQuota
	if quota != nil {
		cq = quota
	}
	if node != nil {
		ts = withCluster{ts, node}
		cm = node.reg
	}
	ts = withUsage{ts, usage, budget}
	st.onCredentials = srv.SetCredentials
	go followAddresses(ctx, cfg, relay4, relay6, bound, srv, log)
	var bm metrics.ByteBudget
	if budget != nil {
		bm = budget
	}
	var fpm metrics.FastPath
	if fp != nil {
		fpm = fp
	}
	m := metrics.New(metrics.Source{
		FastPath:          fpm,
		Stats:             srv.Stats,
		Draining:          srv.Draining,
		PeerDenialReasons: srv.Shared().PeerDenialReasons(),
		FastPathChannels:  srv.FastPathChannels,
		Cluster:           cm,
		ClusterQuota:      cq,
		ByteBudget:        bm,

		ProxyProtocolRejected: srv.ProxyProtocolRejected,
	}, log)
	return &started{
		srv:     ts,
		node:    node,
		bound:   bound,
		metrics: m.Handler(),
		admin: func(cfg config.Config, log *slog.Logger) (*admin.Handler, error) {
			return admin.New(admin.Options{Token: cfg.HTTP.AdminToken, Table: srv, Cluster: clusterAdmin, Revoker: revs, MaxTTL: cfg.Auth.MaxTTL, Log: log})
		},
	}, nil
}

// followAddresses keeps the peer policy's list of ferry's own addresses
// current: an address added after start (an IPv6 temporary address, a
// newly attached cloud IP) must not be reachable through a relay.
func followAddresses(ctx context.Context, cfg config.Config, relay4, relay6 netip.Addr, bound []config.Listener,
	srv *dataplane.Server, log *slog.Logger) {
	initial, err := netwatch.Addrs()
	if err != nil {
		log.Warn("cannot read this host's addresses; the peer policy keeps those read at start", "err", err)
		return
	}
	err = netwatch.Watch(ctx, netwatch.Options{Initial: initial, Log: log}, func(addrs []netip.Addr) {
		self := append([]netip.Addr(nil), addrs...)
		for _, l := range bound {
			self = append(self, l.Addr.Addr())
		}
		pol, err := dataplane.Policy(cfg, relay4, relay6, self)
		if err != nil {
			log.Error("peer policy not updated for the new addresses", "err", err)
			return
		}
		srv.SetPolicy(pol)
	})
	if err != nil {
		log.Warn("not following address changes; the peer policy keeps the addresses read at start", "err", err)
	}
}

// defaultLoops is the number of event loops for cpus cores: half of them,
// at least one. Most of a relayed packet's cost is the kernel's (the UDP
// send and receive paths, and on loopback or a veth pair the receiver's
// delivery too, run in the sending thread); on a 2-core machine one loop
// relays at the same peak as two and spends less CPU per packet, because
// the cores it leaves do the kernel's work and the other loop's wake-ups
// go away (docs/benchmarks.md).
func defaultLoops(cpus int) int { return max(1, (cpus+1)/2) }

// openNATSockets opens the RFC 5780 alternate sockets (A2:P1, A1:P2,
// A2:P2) of every bound UDP listener of alt-ip's family.
func openNATSockets(cfg config.Config, bound []config.Listener) ([]dataplane.NATSockets, error) {
	alt, err := cfg.AltAddr()
	if err != nil || !alt.IsValid() {
		return nil, err
	}
	ephemeral := map[netip.Addr]bool{}
	ls, _ := cfg.Listeners()
	for _, l := range ls {
		if l.Transport == config.UDP && l.Addr.Port() == 0 {
			ephemeral[l.Addr.Addr()] = true
		}
	}
	var out []dataplane.NATSockets
	for _, l := range bound {
		if l.Transport != config.UDP || l.Addr.Addr().Is4() != alt.Is4() {
			continue
		}
		port := cfg.AltPortFor(l.Addr.Port())
		if ephemeral[l.Addr.Addr()] {
			port = cfg.AltPortFor(0)
		}
		n := dataplane.NATSockets{Primary: l.Addr}
		a1, p1 := l.Addr.Addr(), l.Addr.Port()
		var err error
		if n.Alt[0], err = listen.UDPAt(netip.AddrPortFrom(alt, p1)); err == nil {
			if n.Alt[1], err = listen.UDPAt(netip.AddrPortFrom(a1, port)); err == nil {
				if n.Alt[2], err = listen.UDPAt(netip.AddrPortFrom(alt, n.Alt[1].Addr.Port())); err != nil {
					_ = n.Alt[1].Close()
					_ = n.Alt[0].Close()
				}
			} else {
				_ = n.Alt[0].Close()
			}
		}
		if err != nil {
			closeNAT(out)
			return nil, fmt.Errorf("alt-ip/alt-port for listener %s: %w", l, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func closeNAT(ns []dataplane.NATSockets) {
	for _, n := range ns {
		for _, u := range n.Alt {
			_ = u.Close()
		}
	}
}
