package engine

import "time"

// Byte budgets (quota.user-bytes): what a user may relay per period,
// counted by the caller off the packet path (this node's counts, or the
// cluster's in Redis). A user whose budget is spent gets no new
// allocation (486) and its live allocations are closed (CloseOverBudget)
// until the period rolls over.

// SetOverBudget replaces the quota users whose byte budget is spent; nil
// or empty: none. Call CloseOverBudget on every shard to end their live
// allocations.
func (s *Shared) SetOverBudget(users map[string]bool) {
	if len(users) == 0 {
		s.overBudget.Store(nil)
		return
	}
	s.overBudget.Store(&users)
}

// overBudgetUser reports whether user's byte budget is spent.
func (s *Shared) overBudgetUser(user string) bool {
	m := s.overBudget.Load()
	return m != nil && (*m)[user]
}

// CloseOverBudget closes the allocations of users whose budget is spent.
func (e *Engine) CloseOverBudget(out *Output, now time.Time) int {
	e.setTime(now)
	m := e.sh.overBudget.Load()
	if m == nil {
		return 0
	}
	return e.closeWhere(out, EndBudget, func(a *allocation) bool { return (*m)[a.quotaUser] })
}
