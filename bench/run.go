package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// setupParallel bounds concurrent allocation setups and releases.
	setupParallel = 32
	// drainTimeout bounds waiting for packets in flight after sending stops.
	drainTimeout = time.Second
	// releaseTimeout bounds releasing the allocations at the end.
	releaseTimeout = 10 * time.Second
	// allocAttemptTimeout bounds one open+release in allocs mode.
	allocAttemptTimeout = 5 * time.Second
	// sockBuf is the socket buffer asked for (the kernel caps it at
	// net.core.rmem_max/wmem_max).
	sockBuf = 1 << 20
)

// Run runs one benchmark and returns its report. A run stops by itself
// after cfg.Duration (or cfg.Count); cancelling ctx ends it early with a
// partial report. log gets setup progress and errors, never per-packet
// events.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	cfg = cfg.withDefaults()
	server, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	creds := Credentials{User: cfg.User, Password: cfg.Password}
	if cfg.Secret != "" {
		creds = RESTCredentials(cfg.Secret, cfg.User, time.Now().Add(cfg.Duration+cfg.SetupTimeout+time.Hour))
	}
	if err := raiseNofile(cfg.fdsNeeded()); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, server: server, creds: creds, log: log, smp: sampler{pid: cfg.ServerPID}}
	var warnings []string
	if cfg.Cgroup != "" {
		if _, err := readCgroupCPU(cfg.Cgroup); err != nil {
			return nil, err
		}
		r.smp.cgroup = cfg.Cgroup
		r.smp.softirqd = softirqThreads()
		if self, err := os.ReadFile("/proc/self/cgroup"); err == nil && !inCgroup(self, cfg.Cgroup) {
			warnings = append(warnings, fmt.Sprintf("the generator is not in cgroup %s: its CPU is not in the cgroup figures", cfg.Cgroup))
		}
	}
	rep := &Report{
		Mode:        cfg.Mode,
		Transport:   cfg.Transport,
		Server:      server.String(),
		Allocations: cfg.Allocations,
		Size:        cfg.Size,
		Rate:        cfg.Rate,
	}
	if cfg.Rate == 0 {
		rep.Window = cfg.Window
	}
	switch cfg.Mode {
	case ModeAllocs:
		err = r.allocs(ctx, rep)
	case ModeIdle:
		err = r.idle(ctx, rep)
	default:
		err = r.relay(ctx, rep)
	}
	if err != nil {
		return nil, err
	}
	rep.Warning = append(rep.Warning, warnings...)
	if ctx.Err() != nil {
		rep.Warning = append(rep.Warning, "interrupted: the report covers the run up to the interruption")
	}
	return rep, nil
}

type runner struct {
	cfg     Config
	server  netip.AddrPort
	creds   Credentials
	log     *slog.Logger
	smp     sampler
	sources atomic.Uint32 // allocs mode: attempts, for sourceFor
}

// openFlow opens one allocation with its echo peer, permission and channel.
func (r *runner) openFlow(ctx context.Context, batch int) (*flow, error) {
	s, relayed, err := dialAllocate(ctx, r.cfg.Transport, r.server, r.cfg.LocalIP, r.creds, r.cfg.Realm)
	if err != nil {
		return nil, err
	}
	local := s.conn.LocalAddr()
	var localIP net.IP
	switch a := local.(type) {
	case *net.UDPAddr:
		localIP = a.IP
		_ = setBuffers(s.conn.(*net.UDPConn))
	case *net.TCPAddr:
		localIP = a.IP
	}
	peer, err := net.DialUDP("udp", &net.UDPAddr{IP: localIP}, net.UDPAddrFromAddrPort(relayed))
	if err != nil {
		_ = s.release(ctx)
		_ = s.close()
		return nil, fmt.Errorf("echo peer for relay %s: %w", relayed, err)
	}
	_ = setBuffers(peer)
	pa := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	pa = netip.AddrPortFrom(pa.Addr().Unmap(), pa.Port())
	if err := s.permit(ctx, pa, benchChannel); err != nil {
		_ = s.release(ctx)
		_ = s.close()
		_ = peer.Close()
		return nil, fmt.Errorf("relay %s to peer %s: %w", relayed, pa, err)
	}
	return newFlow(s, relayed, peer, r.cfg.Size, batch), nil
}

func setBuffers(c *net.UDPConn) error {
	return errors.Join(c.SetReadBuffer(sockBuf), c.SetWriteBuffer(sockBuf))
}

// parallel runs fn(i) for i < n, at most setupParallel at a time.
func parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, setupParallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// openFlows opens cfg.Allocations flows; on any failure it releases the
// ones it opened and returns the first error and how many failed.
func (r *runner) openFlows(ctx context.Context) ([]*flow, error) {
	n := r.cfg.Allocations
	batch := batchFor(n)
	flows := make([]*flow, n)
	errs := make([]error, n)
	parallel(n, func(i int) {
		flows[i], errs[i] = r.openFlow(ctx, batch)
	})
	failed, first := 0, error(nil)
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if failed == 0 {
		return flows, nil
	}
	var opened []*flow
	for _, f := range flows {
		if f != nil {
			opened = append(opened, f)
		}
	}
	r.release(context.WithoutCancel(ctx), opened)
	return nil, fmt.Errorf("opening %d allocations on %s: %d failed, first: %w", n, r.server, failed, first)
}

// release deletes the flows' allocations and closes their sockets; it
// returns how many releases failed.
func (r *runner) release(ctx context.Context, flows []*flow) int {
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	var failed atomic.Int64
	parallel(len(flows), func(i int) {
		f := flows[i]
		if err := f.sess.release(ctx); err != nil {
			failed.Add(1)
			r.log.Debug("release failed", "relay", f.relayed, "err", err)
		}
		f.close()
	})
	return int(failed.Load())
}

// groupDelta reports the cgroup's CPU between two samples, per unit.
func (r *runner) groupDelta(a, b samples, units uint64, perPacket bool) *Group {
	if r.smp.cgroup == "" {
		return nil
	}
	m := cpuTimes{busy: b.machine.busy - a.machine.busy, steal: b.machine.steal - a.machine.steal}
	return newGroup(r.smp.cgroup, b.group-a.group, b.softirq-a.softirq, m, b.at.Sub(a.at), units, perPacket)
}

// disturbed warns when other processes or other guests took a noticeable
// share of the machine during the measurement.
func disturbed(g *Group) []string {
	if g == nil || (g.OtherPct < 20 && g.StealPct < 10) {
		return nil
	}
	return []string{fmt.Sprintf("other processes used %.0f%% of a core and other guests (steal) %.0f%% during the measurement: results are disturbed", g.OtherPct, g.StealPct)}
}

// relay runs ModeRelay.
func (r *runner) relay(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	s0, err := r.smp.sample()
	if err != nil {
		return err
	}
	setupCtx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	setupStart := time.Now()
	flows, err := r.openFlows(setupCtx)
	if err != nil {
		return err
	}
	setupTook := time.Since(setupStart)
	r.log.Info("allocations open", "server", r.server, "allocations", len(flows), "took", setupTook)
	s1, err := r.smp.sample()
	if err != nil {
		r.release(context.WithoutCancel(ctx), flows)
		return err
	}

	// stop ends sending; each sender then leaves sending, and once all
	// have, what is in flight drains; done ends the receivers.
	var stop, done atomic.Bool
	var wg, sending sync.WaitGroup
	t0 := time.Now()
	writeDeadline := t0.Add(cfg.Duration + drainTimeout + 5*time.Second)
	polled := cfg.polled()
	rep.IO = "blocking"
	if polled {
		rep.IO = "polled"
	}
	for _, f := range flows {
		_ = f.sess.conn.SetReadDeadline(time.Time{}) // setup left one
		_ = f.sess.conn.SetWriteDeadline(writeDeadline)
		_ = f.peer.c.SetWriteDeadline(writeDeadline)
		if !polled {
			wg.Go(func() { f.runEcho(&done) })
		}
	}
	limits := splitCount(cfg.Count, len(flows))
	if cfg.Rate > 0 {
		if !polled {
			for _, f := range flows {
				wg.Go(func() { f.runRecv(&done) })
			}
		}
		senders := min(len(flows), runtime.GOMAXPROCS(0))
		for s := range senders {
			var mine []*flow
			var pacers []pacer
			// Up to four ticks' worth at once absorbs timer jitter; a longer
			// stall skips.
			burst := max(4, int(math.Ceil(4*float64(cfg.Rate)*cfg.Tick.Seconds())))
			for i := s; i < len(flows); i += senders {
				mine = append(mine, flows[i])
				offset := time.Second * time.Duration(i) / time.Duration(cfg.Rate*len(flows))
				pacers = append(pacers, pacer{offset: offset, rate: uint64(cfg.Rate), burst: burst, limit: limits[i]})
			}
			sending.Add(1)
			wg.Go(func() { paceFlows(mine, pacers, t0, cfg.Tick, polled, &stop, &done, &sending) })
		}
	} else {
		for i, f := range flows {
			sending.Add(1)
			wg.Go(func() { f.runWindow(cfg.Window, limits[i], &stop, &done, &sending) })
		}
	}

	// Measure until the duration, the count or ctx ends it.
	end := t0.Add(cfg.Duration)
	for time.Now().Before(end) && ctx.Err() == nil {
		if cfg.Count > 0 && sumSent(flows) >= uint64(cfg.Count) {
			break
		}
		time.Sleep(min(10*time.Millisecond, time.Until(end)))
	}
	stop.Store(true)
	tStop := time.Now()
	sending.Wait()
	for drainEnd := tStop.Add(drainTimeout); time.Now().Before(drainEnd); time.Sleep(5 * time.Millisecond) {
		var sent, back uint64
		for _, f := range flows {
			sent += f.sent.Load()
			back += f.received.Load()
		}
		if back >= sent {
			break
		}
	}
	done.Store(true)
	for _, f := range flows {
		f.wake()
	}
	wg.Wait()
	s2, err := r.smp.sample()
	if err != nil {
		r.release(context.WithoutCancel(ctx), flows)
		return err
	}
	releaseErrs := r.release(context.WithoutCancel(ctx), flows)
	s3, err := r.smp.sample()
	if err != nil {
		return err
	}

	elapsed := tStop.Sub(t0)
	rep.DurationS = round(elapsed.Seconds(), 3)
	rep.Setup = &Setup{
		Seconds:     round(setupTook.Seconds(), 3),
		AllocsPerS:  round(float64(len(flows))/setupTook.Seconds(), 1),
		ReleaseErrs: releaseErrs,
	}
	x := &Relay{}
	var hist histogram
	for _, f := range flows {
		x.Sent += f.sent.Load()
		x.PeerReceived += f.peerRx.Load()
		x.Received += f.received.Load()
		x.Invalid += f.invalid.Load()
		x.Other += f.other.Load()
		x.SendErrors += f.sendErrs.Load()
		x.PeerErrors += f.peerErrs.Load()
		if e := f.lastErr.Load(); e != nil && x.FirstError == "" {
			x.FirstError = (*e).Error()
		}
		hist.merge(f.hist)
	}
	x.Relayed = x.PeerReceived + x.Received
	secs := elapsed.Seconds()
	x.OfferedPPS = round(float64(x.Sent)/secs, 1)
	x.RelayedPPS = round(float64(x.Relayed)/secs, 1)
	x.Mbps = round(float64(x.Relayed)*float64(cfg.Size)*8/secs/1e6, 3)
	if x.Sent > 0 {
		x.LossPct = round(100*float64(x.Sent-min(x.Sent, x.Received))/float64(x.Sent), 4)
	}
	x.RTT = hist.latency()
	rep.Relay = x

	measured := s2.at.Sub(s1.at)
	perPacket := func(p *Process, setupRSS uint64) {
		if x.Relayed > 0 {
			p.CPUPerPacket = ptr(round(p.CPUSeconds*1e6/float64(x.Relayed), 4))
		}
		p.RSSSetupKiB = ptr(setupRSS)
	}
	if cfg.ServerPID > 0 {
		p := newProcess(cfg.ServerPID, s2.server.cpu-s1.server.cpu, measured, s0.server.rssKB, s3.server.rssKB)
		p.RSSPerAlloc = ptr(round((float64(s1.server.rssKB)-float64(s0.server.rssKB))/float64(len(flows)), 2))
		perPacket(p, s1.server.rssKB)
		rep.Srv = p
	}
	g := newProcess(os.Getpid(), s2.self.cpu-s1.self.cpu, measured, s0.self.rssKB, s3.self.rssKB)
	perPacket(g, s1.self.rssKB)
	rep.Gen = g
	rep.Group = r.groupDelta(s1, s2, x.Relayed, true)
	rep.Warning = append(rep.Warning, disturbed(rep.Group)...)

	if cfg.Rate > 0 {
		target := float64(cfg.Rate * len(flows))
		if limits[0] == 0 && x.OfferedPPS < 0.95*target {
			rep.Warning = append(rep.Warning, fmt.Sprintf("generator offered %.0f of %.0f packets/s: it could not keep up", x.OfferedPPS, target))
		}
	}
	rep.Warning = append(rep.Warning, contention(rep.Srv, g)...)
	if releaseErrs > 0 {
		rep.Warning = append(rep.Warning, fmt.Sprintf("%d allocations were not released", releaseErrs))
	}
	return nil
}

func sumSent(flows []*flow) uint64 {
	var n uint64
	for _, f := range flows {
		n += f.sent.Load()
	}
	return n
}

// splitCount divides a total count over n flows (0: no limit; validate
// ensures total >= n).
func splitCount(total, n int) []uint64 {
	out := make([]uint64, n)
	if total <= 0 {
		return out
	}
	for i := range out {
		out[i] = uint64(total / n)
		if i < total%n {
			out[i]++
		}
	}
	return out
}

// paceFlows sends each flow's due packets every tick until stop is set or
// every pacer reached its limit, then leaves sending. Polled, it also
// echoes and receives every tick, until done is set.
func paceFlows(flows []*flow, pacers []pacer, t0 time.Time, tick time.Duration, polled bool, stop, done *atomic.Bool, sending *sync.WaitGroup) {
	next := t0
	active := true
	defer func() {
		if active {
			sending.Done()
		}
	}()
	for !done.Load() {
		if polled {
			for _, f := range flows {
				f.pollEcho()
			}
			for _, f := range flows {
				f.pollRecv()
			}
		}
		if active && stop.Load() {
			active = false
			sending.Done()
		}
		if active {
			elapsed := time.Since(t0)
			more := false
			for i, f := range flows {
				if n := pacers[i].due(elapsed); n > 0 {
					f.send(n)
				}
				more = more || !pacers[i].done()
			}
			if !more {
				active = false
				sending.Done()
			}
		}
		if !active && !polled {
			return
		}
		next = next.Add(tick)
		if now := time.Now(); next.Before(now) {
			next = now // running late: do not try to catch up in a spin
		}
		time.Sleep(time.Until(next))
	}
}

// contention warns when the server and the generator together kept the
// machine's cores more than 80% busy: then they compete for CPU and the
// results measure the pair, not the server alone.
func contention(srv, gen *Process) []string {
	if srv == nil || gen == nil {
		return nil
	}
	cores := runtime.NumCPU()
	if busy := srv.CPUPct + gen.CPUPct; busy > 80*float64(cores) {
		return []string{fmt.Sprintf("server (%.0f%%) and generator (%.0f%%) kept %d cores %.0f%% busy: they compete for CPU",
			srv.CPUPct, gen.CPUPct, cores, busy/float64(cores))}
	}
	return nil
}
