package engine

import "time"

// Cluster-wide per-user allocation quota: with SetClusterQuota on, an
// Allocate that passes this node's checks also asks the cluster
// (OpCheckUser, answered with UserChecked) whether the user is under
// quota.user-allocations across every node, while its relay sockets are
// being bound; the answer comes back before the client hears anything.
// The data plane's checker answers yes when it cannot ask (Redis away):
// this node's own limit then holds alone.

// SetClusterQuota turns the cluster-wide user quota check on or off.
func (s *Shared) SetClusterQuota(on bool) { s.clusterQuota.Store(on) }

// checkUser asks the cluster about a's user, if the check is on.
func (e *Engine) checkUser(out *Output, a *allocation) {
	if !e.sh.clusterQuota.Load() || e.cfg.UserAllocations <= 0 {
		return
	}
	a.pending.checking = true
	e.checking[a.id] = a
	out.add(Command{Op: OpCheckUser, User: a.quotaUser, Alloc: a.id})
}

// UserChecked reports the cluster's answer for allocation id: ok, the
// user is under quota (and now counted there, counted true), or not.
func (e *Engine) UserChecked(out *Output, id uint64, ok, counted bool, now time.Time) {
	e.setTime(now)
	a := e.checking[id]
	if a == nil {
		return // ended meanwhile
	}
	delete(e.checking, id)
	p := a.pending
	p.checking = false
	a.clusterCounted = counted
	if !ok {
		e.refusePending(out, a, RefusedQuota, 486)
		return
	}
	e.maybeReady(out, a)
}
