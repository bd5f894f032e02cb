package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// idleParallel bounds concurrent setups and releases in idle mode: enough
// to keep a server busy without the generator's 401 round trips queueing.
const idleParallel = 64

// idlePeer is the peer allocation i gets its permission and channel for in
// idle mode: the generator's own address, with a port of its own so that no
// two allocations share a peer transport address (coturn's --multiplex-peer
// tells relayed traffic apart by it). Nothing listens there: nothing is
// relayed.
func idlePeer(ip netip.Addr, i int) netip.AddrPort {
	return netip.AddrPortFrom(ip, uint16(1024+i%(65536-1024)))
}

// parallelN runs fn(i) for i < n, at most k at a time.
func parallelN(n, k int, fn func(i int)) {
	sem := make(chan struct{}, k)
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

// openIdle opens allocation i with a permission and a channel, and drops
// the session's read buffer until the release needs it.
func (r *runner) openIdle(ctx context.Context, i int) (*session, error) {
	s, _, err := dialAllocate(ctx, r.cfg.Transport, r.server, r.cfg.LocalIP, r.creds, r.cfg.Realm)
	if err != nil {
		return nil, err
	}
	var ip netip.Addr
	switch a := s.conn.LocalAddr().(type) {
	case *net.UDPAddr:
		ip = a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		ip = a.AddrPort().Addr().Unmap()
	}
	if err := s.permit(ctx, idlePeer(ip, i), benchChannel); err != nil {
		_ = s.release(ctx)
		_ = s.close()
		return nil, err
	}
	s.rbuf = nil
	return s, nil
}

// releaseSessions deletes the sessions' allocations and closes them; it
// returns how many releases failed.
func (r *runner) releaseSessions(ctx context.Context, sessions []*session) int {
	ctx, cancel := context.WithTimeout(ctx, max(releaseTimeout, time.Duration(len(sessions))*2*time.Millisecond))
	defer cancel()
	var failed atomic.Int64
	parallelN(len(sessions), idleParallel, func(i int) {
		s := sessions[i]
		if err := s.release(ctx); err != nil {
			failed.Add(1)
		}
		_ = s.close()
	})
	return int(failed.Load())
}

// idle runs ModeIdle: open cfg.Allocations allocations (each with a
// permission and a channel), hold them without traffic for cfg.Duration,
// read the server's RSS, release them.
func (r *runner) idle(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	n := cfg.Allocations
	s0, err := r.smp.sample()
	if err != nil {
		return err
	}
	setupCtx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	start := time.Now()
	all := make([]*session, n)
	errs := make([]error, n)
	parallelN(n, idleParallel, func(i int) {
		all[i], errs[i] = r.openIdle(setupCtx, i)
	})
	took := time.Since(start)
	d := &Idle{}
	sessions := make([]*session, 0, n)
	for i, s := range all {
		if s != nil {
			sessions = append(sessions, s)
			continue
		}
		d.Failed++
		if d.FirstError == "" {
			d.FirstError = errs[i].Error()
		}
	}
	d.Opened = uint64(len(sessions))
	d.SetupSeconds = round(took.Seconds(), 3)
	d.AllocsPerS = round(float64(d.Opened)/took.Seconds(), 1)
	if d.Opened == 0 {
		return fmt.Errorf("opening %d allocations on %s: none opened, first: %w", n, r.server, errs[0])
	}
	r.log.Info("allocations open", "server", r.server, "allocations", d.Opened, "failed", d.Failed, "took", took)
	s1, err := r.smp.sample()
	if err != nil {
		r.releaseSessions(context.WithoutCancel(ctx), sessions)
		return err
	}

	hold := time.NewTimer(cfg.Duration)
	select {
	case <-hold.C:
	case <-ctx.Done():
		hold.Stop()
	}
	s2, err := r.smp.sample()
	if err != nil {
		r.releaseSessions(context.WithoutCancel(ctx), sessions)
		return err
	}
	d.ReleaseErrs = r.releaseSessions(context.WithoutCancel(ctx), sessions)
	s3, err := r.smp.sample()
	if err != nil {
		return err
	}

	held := s2.at.Sub(s1.at)
	d.HeldSeconds = round(held.Seconds(), 3)
	rep.DurationS = d.HeldSeconds
	rep.Idle = d
	proc := func(pid int, a, b, c, e procSample) *Process {
		p := newProcess(pid, c.cpu-b.cpu, held, a.rssKB, e.rssKB)
		p.RSSSetupKiB = ptr(b.rssKB)
		p.RSSHeldKiB = ptr(c.rssKB)
		return p
	}
	if cfg.ServerPID > 0 {
		p := proc(cfg.ServerPID, s0.server, s1.server, s2.server, s3.server)
		p.RSSPerAlloc = ptr(round((float64(s2.server.rssKB)-float64(s0.server.rssKB))/float64(d.Opened), 3))
		rep.Srv = p
	}
	rep.Gen = proc(os.Getpid(), s0.self, s1.self, s2.self, s3.self)
	if d.Failed > 0 {
		rep.Warning = append(rep.Warning, fmt.Sprintf("%d of %d allocations failed to open (first: %s); RSS is per allocation opened", d.Failed, n, d.FirstError))
	}
	if d.ReleaseErrs > 0 {
		rep.Warning = append(rep.Warning, fmt.Sprintf("%d allocations were not released; the server frees them when they expire", d.ReleaseErrs))
	}
	return nil
}
