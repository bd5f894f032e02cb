package cli

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryrtc/ferry/cluster"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/dataplane"
	"github.com/ferryrtc/ferry/engine"
)

// clusterNode is this node's membership of the cluster: its registry
// entry, kept fresh while serve runs.
type clusterNode struct {
	reg    *cluster.Registry
	id     string
	client *redis.Client
	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// dialCluster returns the client of cfg.Cluster's Redis and this node's
// ID, or a nil client when no cluster is configured. It does not connect:
// Redis being away is not an error.
func dialCluster(cfg config.Config, log *slog.Logger) (*redis.Client, string, error) {
	if !cfg.Cluster.Enabled() {
		return nil, "", nil
	}
	cluster.RouteRedisLogs(log)
	id := cfg.Cluster.NodeID
	if id == "" {
		var err error
		if id, err = os.Hostname(); err != nil || id == "" {
			return nil, "", &exitError{code: 2, err: fmt.Errorf("cluster.node-id is empty and the host name is unknown (%v); set cluster.node-id", err)}
		}
	}
	client, err := cluster.Dial(cfg.Cluster.Redis)
	if err != nil {
		return nil, "", &exitError{code: 2, err: err}
	}
	return client, id, nil
}

// joinCluster starts heartbeating this node into the cluster's Redis
// (client, from dialCluster; nil: no cluster, nil node), and keeps the
// user quota's counts (quota, when set) alive with it.
func joinCluster(cfg config.Config, client *redis.Client, id string, quota *cluster.UserQuota, srv *dataplane.Server, bound []config.Listener, relay4, relay6 netip.Addr, log *slog.Logger) (*clusterNode, error) {
	if client == nil {
		return nil, nil
	}
	var err error
	host := cfg.Cluster.PublicHost
	if host == "" {
		host = advertisedHost(cfg)
	}
	var listeners []string
	for _, l := range bound {
		listeners = append(listeners, string(l.Transport)+"://"+net.JoinHostPort(host, strconv.Itoa(int(l.Addr.Port()))))
	}
	addrs := publicAddrs(cfg, host, relay4, relay6)
	meter := newLoadMeter(srv)
	var reg *cluster.Registry
	reg, err = cluster.NewRegistry(cluster.Options{
		Client: client,
		Prefix: cfg.Cluster.KeyPrefix,
		Log:    log,
		// Every round: where to send clients when this node drains or is
		// full.
		OnRound: func() { srv.Shared().SetAlternates(alternates(reg.Nodes(), id, cfg.Cluster.Region)) },
		Self: func() cluster.Node {
			state := cluster.StateReady
			if srv.Draining() {
				state = cluster.StateDraining
			}
			return cluster.Node{ID: id, Region: cfg.Cluster.Region, PublicHost: host, Listeners: listeners,
				Addrs: addrs, State: state, Load: meter.load(), Version: Version()}
		},
	})
	if err != nil {
		_ = client.Close()
		return nil, &exitError{code: 2, err: err}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &clusterNode{reg: reg, id: id, client: client, ctx: ctx, cancel: cancel}
	n.done.Go(func() { reg.Run(ctx) })
	if quota != nil {
		n.done.Go(func() { quota.Run(ctx) })
	}
	log.Info("cluster: joining", "node", id, "region", cfg.Cluster.Region, "public_host", host)
	return n, nil
}

// withCluster is the TURN server of a cluster node: draining is published
// to the registry at once, so placement stops naming the node.
type withCluster struct {
	turnServer
	node *clusterNode
}

func (w withCluster) Drain() {
	w.turnServer.Drain()
	w.node.draining()
}

// draining publishes the node's draining state at once.
func (n *clusterNode) draining() {
	if n != nil {
		n.reg.Beat()
	}
}

// leave takes the node out of the registry and closes the client.
func (n *clusterNode) leave() {
	if n == nil {
		return
	}
	n.cancel()
	n.done.Wait()
	_ = n.client.Close()
}

// loadMeter turns the server's counters into rates between heartbeats.
type loadMeter struct {
	srv              *dataplane.Server
	mu               sync.Mutex
	at               time.Time
	packets, bytes   uint64
	cpu              time.Duration
	lastPPS, lastBPS float64
	lastCPU          float64
}

func newLoadMeter(srv *dataplane.Server) *loadMeter {
	m := &loadMeter{srv: srv}
	m.sample()
	return m
}

// sample reads the counters now.
func (m *loadMeter) sample() (time.Time, uint64, uint64, time.Duration) {
	st := m.srv.Stats()
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	now := time.Now()
	packets, bytes := st.ToPeerPackets+st.FromPeerPackets, st.ToPeerBytes+st.FromPeerBytes
	if m.at.IsZero() {
		m.at, m.packets, m.bytes, m.cpu = now, packets, bytes, cpu
	}
	return now, packets, bytes, cpu
}

// load returns the live allocations and the rates since the last call.
func (m *loadMeter) load() cluster.Load {
	m.mu.Lock()
	defer m.mu.Unlock()
	now, packets, bytes, cpu := m.sample()
	if dt := now.Sub(m.at).Seconds(); dt >= 0.2 {
		m.lastPPS = float64(packets-m.packets) / dt
		m.lastBPS = 8 * float64(bytes-m.bytes) / dt
		m.lastCPU = (cpu - m.cpu).Seconds() / dt
		m.at, m.packets, m.bytes, m.cpu = now, packets, bytes, cpu
	}
	return cluster.Load{Allocations: m.srv.AllocationCount(), PacketsPerSecond: m.lastPPS, BitsPerSecond: m.lastBPS, CPU: m.lastCPU}
}

// place returns the credentials API's placement: the cluster's count
// least-loaded ready nodes for a caller's region.
func (n *clusterNode) place(count int) func(region string) []creds.Target {
	return func(region string) []creds.Target {
		var out []creds.Target
		for _, nd := range cluster.Place(n.reg.Nodes(), region, count) {
			if t, ok := targetOf(nd); ok {
				out = append(out, t)
			}
		}
		return out
	}
}

// targetOf turns a registry entry into the listeners clients reach at its
// public host; an entry whose listeners do not parse is left out.
func targetOf(nd cluster.Node) (creds.Target, bool) {
	t := creds.Target{Host: nd.PublicHost}
	for _, s := range nd.Listeners {
		u, err := url.Parse(s)
		if err != nil {
			return creds.Target{}, false
		}
		port, err := strconv.ParseUint(u.Port(), 10, 16)
		if err != nil || port == 0 {
			return creds.Target{}, false
		}
		tr := config.Transport(u.Scheme)
		switch tr {
		case config.UDP, config.TCP, config.TLSt, config.DTLS:
		default:
			return creds.Target{}, false
		}
		t.Listeners = append(t.Listeners, config.Listener{Transport: tr, Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port))})
	}
	return t, len(t.Listeners) > 0
}

// publicAddrs are the addresses clients reach this node at, one per
// family: the public host if it is an address, else the external (1:1
// NAT) addresses, else the relay addresses.
func publicAddrs(cfg config.Config, host string, relay4, relay6 netip.Addr) []string {
	v4, v6 := relay4, relay6
	if e4, e6, err := cfg.Relay.ExternalIPs(); err == nil {
		if e4.IsValid() {
			v4 = e4
		}
		if e6.IsValid() {
			v6 = e6
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip = ip.Unmap(); ip.Is4() {
			v4 = ip
		} else {
			v6 = ip
		}
	}
	var out []string
	for _, a := range []netip.Addr{v4, v6} {
		if a.IsValid() && !a.IsUnspecified() {
			out = append(out, a.String())
		}
	}
	return out
}

// alternates picks, for each client transport and family, the ready node
// (not self; this node's region first, then the least loaded) with a
// listener of that transport and an address of that family.
func alternates(nodes []cluster.Node, self, region string) *engine.Alternates {
	others := make([]cluster.Node, 0, len(nodes))
	for _, n := range nodes {
		if n.ID != self {
			others = append(others, n)
		}
	}
	out := &engine.Alternates{}
	transports := map[config.Transport]engine.Transport{config.UDP: engine.UDP, config.TCP: engine.TCP, config.TLSt: engine.TLS, config.DTLS: engine.DTLS}
	for _, n := range cluster.Place(others, region, len(others)) {
		t, ok := targetOf(n)
		if !ok {
			continue
		}
		domain := ""
		if _, err := netip.ParseAddr(n.PublicHost); err != nil {
			domain = n.PublicHost
		}
		for _, s := range n.Addrs {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			fam := 0
			if ip = ip.Unmap(); ip.Is6() {
				fam = 1
			}
			for _, l := range t.Listeners {
				et := transports[l.Transport]
				if a := &out[et][fam]; !a.Addr.IsValid() {
					*a = engine.Alternate{Addr: netip.AddrPortFrom(ip, l.Addr.Port()), Domain: domain}
				}
			}
		}
	}
	return out
}

// nonceKey derives the nonce key of a cluster from cluster.nonce-secret:
// the same on every node, never the secret itself.
func nonceKey(secret string) []byte {
	h := sha256.Sum256([]byte("ferry cluster nonce key v1\x00" + secret))
	return h[:]
}

// openRevocations returns the revocations store: in the cluster's Redis
// (kept current by a goroutine that ends with the node), or in this
// process. Each change is put in force in the engine, which closes the
// live allocations it hits.
func openRevocations(node *clusterNode, prefix string, srv *dataplane.Server, log *slog.Logger) *cluster.Revocations {
	o := cluster.RevocationOptions{
		Prefix: prefix,
		Log:    log,
		OnChange: func(list []cluster.Revocation) {
			r := &engine.Revocations{Users: map[string]bool{}, Usernames: map[string]bool{}}
			for _, rev := range list {
				if rev.Kind == cluster.RevokeUser {
					r.Users[rev.Name] = true
				} else {
					r.Usernames[rev.Name] = true
				}
			}
			closed := srv.SetRevocations(r)
			log.Info("revocations in force", "count", len(list), "closed_allocations", closed)
		},
	}
	if node != nil {
		o.Client, o.Node = node.client, node.id
	}
	revs := cluster.NewRevocations(o)
	if node != nil {
		node.done.Go(func() { revs.Run(node.ctx) })
	}
	return revs
}

// admin answers the cluster's admin requests from srv's table while the
// node lives, and returns what makes them.
func (n *clusterNode) admin(prefix string, srv *dataplane.Server, log *slog.Logger) *cluster.Admin {
	a := cluster.NewAdmin(cluster.AdminOptions{
		Client: n.client, Prefix: prefix, Node: n.id,
		List: srv.List, CloseUser: srv.CloseUser, Nodes: n.reg.Nodes, Log: log,
	})
	n.done.Go(func() { a.Run(n.ctx) })
	return a
}

// newUserQuota returns the cluster-wide per-user allocation quota of cfg,
// or nil without a cluster or a per-user quota. Its resync reads srv,
// which *srv holds by the time it runs.
func newUserQuota(cfg config.Config, client *redis.Client, id string, srv **dataplane.Server, log *slog.Logger) *cluster.UserQuota {
	if client == nil || cfg.Quota.UserAllocations <= 0 {
		return nil
	}
	return cluster.NewUserQuota(cluster.QuotaOptions{
		Client: client, Prefix: cfg.Cluster.KeyPrefix, Node: id, Limit: cfg.Quota.UserAllocations, Log: log,
		Counts: func() map[string]int {
			counts := map[string]int{}
			for _, a := range (*srv).List() {
				if a.ClusterCounted {
					counts[a.User]++
				}
			}
			return counts
		},
	})
}
