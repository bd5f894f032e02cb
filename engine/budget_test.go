package engine

import (
	"testing"

	"github.com/pion/stun/v3"
)

// A user over its byte budget loses its live allocations (ended as
// "budget") and gets 486 on Allocate; others are untouched; the next
// period (an empty set) lets it allocate again.
func TestOverBudget(t *testing.T) {
	s := newSim(t, simOpts{})
	alice := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	alice.allocate()
	bob := s.client(UDP, "198.51.100.2:1000", "bob", "builder")
	bob.allocate()
	set := func(users map[string]bool) int {
		s.sh.SetOverBudget(users)
		n := 0
		for _, e := range s.eng {
			n += e.CloseOverBudget(&s.out, s.now)
			s.exec(e.Shard())
		}
		return n
	}
	if n := set(map[string]bool{"alice": true}); n != 1 {
		t.Fatalf("closed %d allocations, want alice's", n)
	}
	if code := errorCode(alice.do(stun.MethodRefresh)); code != 437 {
		t.Fatalf("alice's Refresh after her budget was spent: %d, want 437 (no allocation)", code)
	}
	again := s.client(UDP, "198.51.100.1:1001", "alice", "wonderland")
	if code := errorCode(again.do(stun.MethodAllocate, requestedTransport(17))); code != 486 {
		t.Fatalf("alice allocating over budget: %d, want 486", code)
	}
	bob.mustOK("bob's Refresh", bob.do(stun.MethodRefresh))
	st := s.stats()
	if st.Ended[EndBudget] != 1 || st.Refused[RefusedBudget] != 1 {
		t.Fatalf("ended by budget %d, refused for budget %d; want 1, 1", st.Ended[EndBudget], st.Refused[RefusedBudget])
	}
	if n := set(nil); n != 0 {
		t.Fatalf("a new period closed %d", n)
	}
	s.client(UDP, "198.51.100.1:1002", "alice", "wonderland").allocate()
}
