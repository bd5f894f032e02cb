package engine

import (
	"sync/atomic"
)

// counter is a statistic with one writer (the shard's loop) and any number
// of readers: increments are a load and a store, no locked instruction.
type counter struct{ v atomic.Uint64 }

func (c *counter) add(n uint64) { c.v.Store(c.v.Load() + n) }
func (c *counter) inc()         { c.add(1) }
func (c *counter) dec()         { c.v.Store(c.v.Load() - 1) }
func (c *counter) load() uint64 { return c.v.Load() }

// Drop reasons: why a packet was not relayed or answered.
const (
	DropMalformed     = iota // not STUN or ChannelData, or a STUN message that does not parse
	DropOversized            // larger than a datagram ferry relays
	DropInvalidFrame         // a stream connection's framing broke (counted by the data plane)
	DropPolicy               // no permission, expired, a peer or port the policy refuses, no allocation
	DropRateLimit            // over a per-address limit
	DropBandwidth            // over a bandwidth cap
	DropAmplification        // an unauthenticated answer larger than the request allows
	numDrops
)

// DropReasons names the drop reasons in the order of the constants.
func DropReasons() []string {
	return []string{"malformed", "oversized", "invalid_frame", "policy", "rate_limit", "bandwidth_cap", "amplification"}
}

// Why an allocation ended.
const (
	EndExpired  = iota // its lifetime ran out
	EndClient          // the client released it (Refresh 0) or closed its connection
	EndAdmin           // closed through the admin API
	EndShutdown        // ferry shut down or finished draining
	EndBudget          // its user's byte budget for the period was spent
	numEnds
)

// EndReasons names the end reasons in the order of the constants.
func EndReasons() []string { return []string{"expired", "client", "admin", "shutdown", "budget"} }

// Why an Allocate was refused.
const (
	RefusedAuth       = iota // the credential was refused (401)
	RefusedQuota             // a per-user quota (486)
	RefusedPolicy            // an address family or transport ferry does not offer (440, 442)
	RefusedCapacity          // no relay port, or the server-wide quota (508)
	RefusedDraining          // draining (508)
	RefusedRedirected        // draining or full, sent to another node (300)
	RefusedBudget            // the user's byte budget for the period is spent (486)
	numRefused
)

// RefusedReasons names the refusal reasons in the order of the constants.
func RefusedReasons() []string {
	return []string{"auth", "quota", "policy", "capacity", "draining", "redirected", "budget"}
}

// Authenticated methods, for counting refused credentials.
const (
	methodAllocate = iota
	methodRefresh
	methodCreatePermission
	methodChannelBind
	methodConnect
	methodConnectionBind
	methodOther
	numMethods
)

// AuthMethods names the methods refused credentials are counted by.
func AuthMethods() []string {
	return []string{"Allocate", "Refresh", "CreatePermission", "ChannelBind", "Connect", "ConnectionBind", "other"}
}

// Families of relayed addresses, as labelled.
func Families() []string { return []string{"ipv4", "ipv6"} }

// Stats are one shard's counters. The shard's loop writes them; anyone may
// read them (Shared.Stats sums the shards).
type Stats struct {
	ToPeerPackets, ToPeerBytes     counter
	FromPeerPackets, FromPeerBytes counter
	Dropped                        [numDrops]counter
	Bindings                       counter
	StaleNonces                    counter // 438s: expired, foreign or unknown nonces
	// OffloadedToPeer and OffloadedFromPeer are the relayed packets the
	// kernel fast path carried (also in ToPeerPackets, FromPeerPackets).
	OffloadedToPeer, OffloadedFromPeer counter
	Created                            [numTransports][2]counter
	Active                             [numTransports][2]counter
	Ended                              [numEnds]counter
	AuthFailures                       [numMethods]counter
	Refused                            [numRefused]counter
	PeerDenied                         []counter // by Shared.denyIndex
	PermissionsCreated                 counter
	PermissionsActive                  counter
	ChannelsCreated                    counter
	ChannelsActive                     counter
	// tcpEnded holds the RFC 6062 bytes of ended allocations, which the
	// data plane counted in the allocations' Traffic.
	tcpEnded Traffic
}

// Snapshot is the sum of every shard's counters at one moment.
type Snapshot struct {
	ToPeerPackets, ToPeerBytes     uint64
	FromPeerPackets, FromPeerBytes uint64
	Dropped                        [numDrops]uint64
	Bindings                       uint64
	StaleNonces                    uint64
	OffloadedToPeer                uint64
	OffloadedFromPeer              uint64
	Created                        [numTransports][2]uint64
	Active                         [numTransports][2]uint64
	Ended                          [numEnds]uint64
	AuthFailures                   [numMethods]uint64
	Refused                        [numRefused]uint64
	PeerDenied                     map[string]uint64
	PermissionsCreated             uint64
	PermissionsActive              uint64
	ChannelsCreated                uint64
	ChannelsActive                 uint64
	Allocations                    int
}

func (s *Snapshot) add(st *Stats, reasons []string) {
	s.ToPeerPackets += st.ToPeerPackets.load() + st.tcpEnded.ToPeerPackets.Load()
	s.ToPeerBytes += st.ToPeerBytes.load() + st.tcpEnded.ToPeerBytes.Load()
	s.FromPeerPackets += st.FromPeerPackets.load() + st.tcpEnded.FromPeerPackets.Load()
	s.FromPeerBytes += st.FromPeerBytes.load() + st.tcpEnded.FromPeerBytes.Load()
	for i := range st.Dropped {
		s.Dropped[i] += st.Dropped[i].load()
	}
	s.Bindings += st.Bindings.load()
	s.StaleNonces += st.StaleNonces.load()
	s.OffloadedToPeer += st.OffloadedToPeer.load()
	s.OffloadedFromPeer += st.OffloadedFromPeer.load()
	for t := range st.Created {
		for f := range st.Created[t] {
			s.Created[t][f] += st.Created[t][f].load()
			s.Active[t][f] += st.Active[t][f].load()
		}
	}
	for i := range st.Ended {
		s.Ended[i] += st.Ended[i].load()
	}
	for i := range st.AuthFailures {
		s.AuthFailures[i] += st.AuthFailures[i].load()
	}
	for i := range st.Refused {
		s.Refused[i] += st.Refused[i].load()
	}
	for i, r := range reasons {
		s.PeerDenied[r] += st.PeerDenied[i].load()
	}
	s.PermissionsCreated += st.PermissionsCreated.load()
	s.PermissionsActive += st.PermissionsActive.load()
	s.ChannelsCreated += st.ChannelsCreated.load()
	s.ChannelsActive += st.ChannelsActive.load()
}

// Dropped returns the count of one drop reason by name (DropReasons).
func (s *Snapshot) DroppedBy(reason string) uint64 {
	for i, r := range DropReasons() {
		if r == reason {
			return s.Dropped[i]
		}
	}
	return 0
}
