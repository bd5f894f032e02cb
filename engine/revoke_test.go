package engine

import (
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// A revoked user or credential gets no new allocation and loses its live
// ones; others are untouched; lifting it restores them.
func TestRevocation(t *testing.T) {
	s := newSim(t, simOpts{})
	alice := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	alice.allocate()
	bob := s.client(UDP, "198.51.100.2:1000", "bob", "builder")
	bob.allocate()
	restA := s.restClient("198.51.100.3:1000", "carol", testSecret, time.Hour)
	restA.allocate()
	restB := s.restClient("198.51.100.4:1000", "carol", testSecret, 2*time.Hour)

	closeRevoked := func(r *Revocations) int {
		s.sh.SetRevocations(r)
		n := 0
		for _, e := range s.eng {
			n += e.CloseRevoked(&s.out, s.now)
			s.exec(e.Shard())
		}
		return n
	}
	// Revoke the user alice and carol's first credential.
	if n := closeRevoked(&Revocations{Users: map[string]bool{"alice": true}, Usernames: map[string]bool{restA.username: true}}); n != 2 {
		t.Fatalf("closed %d allocations, want alice's and carol's first", n)
	}
	// Her allocation is gone and her credential refused: 401, not 437.
	if code := errorCode(alice.do(stun.MethodRefresh)); code != 401 {
		t.Fatalf("alice's Refresh after revocation: %d, want 401", code)
	}
	for name, cl := range map[string]*simClient{"alice": s.client(UDP, "198.51.100.1:1001", "alice", "wonderland"), "carol's first credential": restA} {
		if code := errorCode(cl.do(stun.MethodAllocate, requestedTransport(17))); code != 401 {
			t.Fatalf("%s allocating after revocation: %d, want 401", name, code)
		}
	}
	bob.mustOK("bob's Refresh", bob.do(stun.MethodRefresh))
	restB.allocate() // carol's other credential still works
	// Lifted: alice allocates again.
	if n := closeRevoked(nil); n != 0 {
		t.Fatalf("lifting closed %d", n)
	}
	s.client(UDP, "198.51.100.1:1002", "alice", "wonderland").allocate()
	if s.stats().Ended[EndAdmin] != 2 {
		t.Fatalf("ended by admin: %d", s.stats().Ended[EndAdmin])
	}
}
