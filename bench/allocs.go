package bench

import (
	"context"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// allocWorker is one allocs-mode client loop's results.
type allocWorker struct {
	hist                     histogram
	opened, released, failed uint64
	firstErr                 error
}

// sourceFor returns the local address of allocs-mode attempt n against an
// IPv4 loopback server: 127.<1..254>.<n>, so no client 5-tuple repeats
// within a run (16 million attempts). With one source address the kernel
// soon hands out a recently used port again, and a server that remembers a
// released allocation's 5-tuple for a while (coturn answers 437) would be
// charged for what is an artefact of the generator.
func sourceFor(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(1 + (n>>16)%254), byte(n >> 8), byte(n)})
}

// sourceIn returns the local address of allocs-mode attempt n within p (an
// IPv4 prefix of at most /30), skipping its first and last address.
func sourceIn(p netip.Prefix, n uint32) netip.Addr {
	hosts := uint64(1) << (32 - p.Bits())
	b := p.Masked().Addr().As4()
	v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	v += 1 + uint64(n)%(hosts-2)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// allocs runs ModeAllocs: cfg.Allocations clients each, in a loop, open a
// new socket, Allocate (401 challenge and authenticated request), release
// the allocation (Refresh LIFETIME 0) and close the socket.
func (r *runner) allocs(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	s0, err := r.smp.sample()
	if err != nil {
		return err
	}
	var stop atomic.Bool
	var attempts, consecutiveFails atomic.Int64
	workers := make([]allocWorker, cfg.Allocations)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		wg.Go(func() {
			for !stop.Load() {
				if cfg.Count > 0 && attempts.Add(1) > int64(cfg.Count) {
					return
				}
				if err := r.allocOnce(ctx, w); err != nil {
					w.failed++
					if w.firstErr == nil {
						w.firstErr = err
					}
					// A server that refuses everything ends the run early.
					if consecutiveFails.Add(1) > int64(10*cfg.Allocations) {
						stop.Store(true)
					}
					time.Sleep(time.Millisecond)
					continue
				}
				consecutiveFails.Store(0)
			}
		})
	}
	end := t0.Add(cfg.Duration)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	timer := time.NewTimer(time.Until(end))
	select {
	case <-timer.C:
	case <-ctx.Done():
	case <-finished:
	}
	timer.Stop()
	stop.Store(true)
	<-finished
	elapsed := time.Since(t0)
	s1, err := r.smp.sample()
	if err != nil {
		return err
	}

	a := &Allocs{}
	var hist histogram
	for i := range workers {
		w := &workers[i]
		a.Opened += w.opened
		a.Released += w.released
		a.Failed += w.failed
		if w.firstErr != nil && a.FirstError == "" {
			a.FirstError = w.firstErr.Error()
		}
		hist.merge(&w.hist)
	}
	a.PerSecond = round(float64(a.Opened)/elapsed.Seconds(), 1)
	a.Allocate = hist.latency()
	rep.Allocs = a
	rep.DurationS = round(elapsed.Seconds(), 3)
	perAlloc := func(p *Process) {
		if a.Opened > 0 {
			p.CPUPerAlloc = ptr(round(p.CPUSeconds*1e6/float64(a.Opened), 2))
		}
	}
	measured := s1.at.Sub(s0.at)
	if cfg.ServerPID > 0 {
		rep.Srv = newProcess(cfg.ServerPID, s1.server.cpu-s0.server.cpu, measured, s0.server.rssKB, s1.server.rssKB)
		perAlloc(rep.Srv)
	}
	rep.Gen = newProcess(os.Getpid(), s1.self.cpu-s0.self.cpu, measured, s0.self.rssKB, s1.self.rssKB)
	perAlloc(rep.Gen)
	rep.Group = r.groupDelta(s0, s1, a.Opened, false)
	rep.Warning = append(rep.Warning, disturbed(rep.Group)...)
	rep.Warning = append(rep.Warning, contention(rep.Srv, rep.Gen)...)
	if a.Opened == 0 && a.FirstError != "" {
		rep.Warning = append(rep.Warning, "no allocation succeeded: "+a.FirstError)
	}
	if a.Released < a.Opened {
		rep.Warning = append(rep.Warning, "some allocations were not released; the server frees them when they expire")
	}
	return nil
}

// allocOnce opens and releases one allocation on a new socket.
func (r *runner) allocOnce(ctx context.Context, w *allocWorker) error {
	ctx, cancel := context.WithTimeout(ctx, allocAttemptTimeout)
	defer cancel()
	start := time.Now()
	local := r.cfg.LocalIP
	switch {
	case r.cfg.SourceNet.IsValid():
		local = sourceIn(r.cfg.SourceNet, r.sources.Add(1))
	case r.server.Addr().Is4() && r.server.Addr().IsLoopback():
		local = sourceFor(r.sources.Add(1))
	}
	s, err := dialSession(ctx, r.cfg.Transport, r.server, local, r.creds, r.cfg.Realm)
	if err != nil {
		return err
	}
	defer func() {
		if tc, ok := s.conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // no TIME_WAIT: thousands of connections per run
		}
		_ = s.close()
	}()
	if _, err := s.allocate(ctx); err != nil {
		return err
	}
	w.hist.record(time.Since(start))
	w.opened++
	if err := s.release(ctx); err != nil {
		return err
	}
	w.released++
	return nil
}
