package engine

import "time"

// Revocation (the cluster's, or one node's admin API): a revoked user
// (every credential of a static user or of a REST user name's user part)
// or a revoked credential user name gets no new allocation (401), and its
// live allocations are closed (CloseRevoked), so that a leaked or abused
// credential stops working before it expires.

// Revocations are the users and credential user names refused.
type Revocations struct {
	Users     map[string]bool
	Usernames map[string]bool
}

// revoked reports whether a credential of quota user user and user name
// username is revoked.
func (r *Revocations) revoked(user, username string) bool {
	return r != nil && (r.Users[user] || r.Usernames[username])
}

// SetRevocations replaces the revocations in force; nil: none. Call
// CloseRevoked on every shard to end the live allocations they hit.
func (s *Shared) SetRevocations(r *Revocations) { s.revocations.Store(r) }

// Revocations returns the revocations in force (nil: none).
func (s *Shared) Revocations() *Revocations { return s.revocations.Load() }

// CloseRevoked closes the allocations of revoked users and credentials.
func (e *Engine) CloseRevoked(out *Output, now time.Time) int {
	e.setTime(now)
	r := e.sh.revocations.Load()
	if r == nil {
		return 0
	}
	return e.closeWhere(out, EndAdmin, func(a *allocation) bool {
		return a.user != nil && r.revoked(a.user.name, a.username)
	})
}
