package cli

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/ferryrtc/ferry/admin"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/metrics"
	"github.com/ferryrtc/ferry/relay"
	"github.com/ferryrtc/ferry/server"
)

// ops is serve's operational plumbing: the allocation tracker, the metrics
// registry and the admin API.
type ops struct {
	tracker *relay.Tracker
	metrics *metrics.Metrics
}

func newOps(bound []config.Listener, log *slog.Logger) *ops {
	return &ops{
		tracker: relay.NewTracker(relay.TrackerOptions{ClientTransport: clientTransport(bound), Log: log}),
		metrics: metrics.New(metrics.Options{
			RefusedReasons:    server.RefusedReasons(),
			AuthMethods:       server.AuthMethods(),
			PeerDenialReasons: relay.Reasons(),
			Log:               log,
		}),
	}
}

// serverOptions hooks the tracker and metrics into o.
func (op *ops) serverOptions(o server.Options) server.Options {
	o.Tracker = op.tracker
	o.Observer = op.metrics
	o.Events = op.metrics.Events()
	return o
}

// register adds the scrape-time collector over srv's counters.
func (op *ops) register(srv *server.Server) error {
	return op.metrics.Register(metrics.Sources{
		Tracker:  op.tracker,
		Edge:     srv.EdgeCounters(),
		STUN:     srv.STUNCounters(),
		Quota:    srv.QuotaStats,
		Draining: srv.Draining,
	})
}

// adminHandler is the admin API; it answers 404 while http.admin-token is
// empty, and a reload can set or change the token.
func (op *ops) adminHandler(cfg config.Config, log *slog.Logger) (*admin.Handler, error) {
	return admin.New(admin.Options{Token: cfg.HTTP.AdminToken, Tracker: op.tracker, Log: log})
}

// clientTransport names an allocation's client transport (udp, tcp, tls,
// dtls) from the local address of the socket the client reached: an exact
// bound listener address, else a listener of the same kind and port (a
// wildcard listener's connections have a concrete local address).
func clientTransport(bound []config.Listener) func(net.Addr) string {
	type key struct {
		stream bool
		addr   netip.AddrPort // port only (zero address) for the fallback
	}
	known := map[key]string{}
	for _, l := range bound {
		stream := l.Transport == config.TCP || l.Transport == config.TLSt
		known[key{stream, l.Addr}] = string(l.Transport)
		byPort := key{stream, netip.AddrPortFrom(netip.Addr{}, l.Addr.Port())}
		if _, dup := known[byPort]; !dup {
			known[byPort] = string(l.Transport)
		}
	}
	return func(a net.Addr) string {
		var ap netip.AddrPort
		stream := false
		switch a := a.(type) {
		case *net.UDPAddr:
			ap = a.AddrPort()
		case *net.TCPAddr:
			ap, stream = a.AddrPort(), true
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if t, ok := known[key{stream, ap}]; ok {
			return t
		}
		if t, ok := known[key{stream, netip.AddrPortFrom(netip.Addr{}, ap.Port())}]; ok {
			return t
		}
		if stream {
			return string(config.TCP)
		}
		return string(config.UDP)
	}
}

// drainTick is how often a drain checks whether allocations are left.
const drainTick = 200 * time.Millisecond

// drain stops granting allocations and lets the existing ones relay until
// none is left, timeout has passed, ctx ends or another SIGTERM or SIGINT
// arrives. SIGHUP still reloads (onHUP).
func drain(ctx context.Context, srv turnServer, timeout time.Duration, sigs <-chan os.Signal, onHUP func(), log *slog.Logger) {
	srv.Drain()
	if timeout <= 0 {
		return
	}
	log.Info("draining: refusing new allocations, relaying existing ones",
		"allocations", srv.AllocationCount(), "timeout", timeout.String())
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(drainTick)
	defer tick.Stop()
	for {
		if n := srv.AllocationCount(); n == 0 {
			log.Info("drained: no allocations left")
			return
		}
		select {
		case <-deadline.C:
			log.Info("drain timeout reached; closing the remaining allocations", "allocations", srv.AllocationCount())
			return
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				onHUP()
				continue
			}
			log.Info("second signal: stopping without waiting", "signal", sig.String(), "allocations", srv.AllocationCount())
			return
		case <-tick.C:
		}
	}
}
