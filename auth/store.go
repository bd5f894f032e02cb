package auth

import "sync/atomic"

// Store holds the credential Snapshot in force. A reload builds a new
// snapshot and swaps it in; readers load the current one without locking.
type Store struct {
	cur atomic.Pointer[Snapshot]
}

// NewStore returns a Store serving s.
func NewStore(s *Snapshot) *Store {
	st := &Store{}
	st.cur.Store(s)
	return st
}

// Snapshot returns the credentials in force.
func (s *Store) Snapshot() *Snapshot { return s.cur.Load() }

// Swap makes n the credentials in force and returns the previous ones.
func (s *Store) Swap(n *Snapshot) (old *Snapshot) { return s.cur.Swap(n) }
