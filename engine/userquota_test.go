package engine

import (
	"testing"

	"github.com/pion/stun/v3"
)

// With the cluster check on, a user's allocations on other nodes count:
// the Allocate over the cluster-wide quota gets 486, and an allocation's
// end gives its place back.
func TestClusterUserQuota(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.UserAllocations = 2 }})
	s.sh.SetClusterQuota(true)
	s.clusterQuota = 2
	s.clusterUsers["alice"] = 1 // one on another node
	a1 := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	a1.allocate()
	if code := errorCode(s.client(UDP, "198.51.100.1:1001", "alice", "wonderland").do(stun.MethodAllocate, requestedTransport(17))); code != 486 {
		t.Fatalf("alice's allocation over the cluster quota: %d, want 486", code)
	}
	if len(s.relays) != 1 {
		t.Fatalf("%d relay sockets open; the refused one's must be closed", len(s.relays))
	}
	s.client(UDP, "198.51.100.2:1000", "bob", "builder").allocate() // bob is not alice
	a1.mustOK("Refresh 0", a1.do(stun.MethodRefresh, lifetime(0)))
	if s.clusterUsers["alice"] != 1 {
		t.Fatalf("the cluster counts %d of alice's, want the other node's 1", s.clusterUsers["alice"])
	}
	s.client(UDP, "198.51.100.1:1002", "alice", "wonderland").allocate()
	if st := s.stats(); st.Refused[RefusedQuota] != 1 {
		t.Fatalf("quota refusals %d", st.Refused[RefusedQuota])
	}
	// Off: only this node's count.
	s.sh.SetClusterQuota(false)
	s.clusterUsers["alice"] = 99
	if code := errorCode(s.client(UDP, "198.51.100.1:1003", "alice", "wonderland").do(stun.MethodAllocate, requestedTransport(17))); code != 0 {
		t.Fatalf("without the cluster check: %d", code)
	}
}
