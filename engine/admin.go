package engine

import (
	"net/netip"
	"time"
)

// AllocationInfo describes one live allocation for the admin API.
type AllocationInfo struct {
	// ID is unique among the process's allocations.
	ID uint64 `json:"id"`
	// User is the quota user; Username the credential's user name.
	User     string `json:"user"`
	Username string `json:"username"`
	Realm    string `json:"realm"`
	// Client is the client's address and Server the ferry address it
	// reached: with Transport, the client 5-tuple.
	Client    string `json:"client"`
	Server    string `json:"server"`
	Transport string `json:"transport"`
	// Relay is the relayed transport address given to the client
	// (XOR-RELAYED-ADDRESS; the first of a dual allocation, the others in
	// Relays), RelayTransport udp or tcp (RFC 6062).
	Relay           string    `json:"relay"`
	Relays          []string  `json:"relays,omitempty"`
	RelayTransport  string    `json:"relay_transport"`
	Family          string    `json:"family"`
	Created         time.Time `json:"created"`
	AgeSeconds      float64   `json:"age_seconds"`
	ExpiresIn       float64   `json:"expires_in_seconds"`
	Permissions     int       `json:"permissions"`
	Channels        int       `json:"channels"`
	ToPeerPackets   uint64    `json:"to_peer_packets"`
	ToPeerBytes     uint64    `json:"to_peer_bytes"`
	FromPeerPackets uint64    `json:"from_peer_packets"`
	FromPeerBytes   uint64    `json:"from_peer_bytes"`
	// Ended and EndReason are set in the record of an allocation that
	// ended (OpEnded): when, and why (EndReasons).
	Ended     time.Time `json:"ended,omitzero"`
	EndReason string    `json:"end_reason,omitempty"`
	// ClusterCounted: the cluster counts it against its user's quota.
	ClusterCounted bool `json:"-"`
}

// List appends every live allocation of the shard to dst.
func (e *Engine) List(dst []AllocationInfo, now time.Time) []AllocationInfo {
	e.setTime(now)
	for _, a := range e.allocs {
		if a.pending != nil {
			continue
		}
		dst = append(dst, e.info(a))
	}
	return dst
}

// info describes a.
func (e *Engine) info(a *allocation) AllocationInfo {
	info := AllocationInfo{
		ID:              a.id,
		User:            a.quotaUser,
		Username:        a.username,
		Realm:           e.cfg.Realm,
		Client:          a.client.Remote.String(),
		Server:          a.client.Local.String(),
		Transport:       a.client.Transport.String(),
		Relay:           a.ends[0].adv.String(),
		RelayTransport:  "udp",
		Family:          Families()[familyIndex(a.ends[0].family)],
		Created:         a.created,
		AgeSeconds:      float64(e.wall - a.created.Unix()),
		ExpiresIn:       float64(a.expires-e.now) / float64(time.Second),
		Permissions:     a.livePermissions(e.now),
		ToPeerPackets:   a.traffic.ToPeerPackets.Load(),
		ToPeerBytes:     a.traffic.ToPeerBytes.Load(),
		FromPeerPackets: a.traffic.FromPeerPackets.Load(),
		FromPeerBytes:   a.traffic.FromPeerBytes.Load(),
		ClusterCounted:  a.clusterCounted,
	}
	for _, ch := range a.chans {
		if ch.active {
			info.Channels++
		}
	}
	if a.tcp {
		info.RelayTransport = "tcp"
	}
	for i := 1; i < a.nEnds; i++ {
		info.Relays = append(info.Relays, a.ends[i].adv.String())
	}
	return info
}

// CloseRelay closes the allocations with relayed address relay (as
// advertised or as bound); transport "udp" or "tcp" picks one kind, ""
// both. It returns how many it closed.
func (e *Engine) CloseRelay(out *Output, relay netip.AddrPort, transport string, now time.Time) int {
	e.setTime(now)
	relay = netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())
	return e.closeWhere(out, EndAdmin, func(a *allocation) bool {
		if transport == "udp" && a.tcp || transport == "tcp" && !a.tcp {
			return false
		}
		for i := range a.ends[:a.nEnds] {
			if a.ends[i].adv == relay || a.ends[i].bound == relay {
				return true
			}
		}
		return false
	})
}

// CloseUser closes every allocation of quota user user.
func (e *Engine) CloseUser(out *Output, user string, now time.Time) int {
	e.setTime(now)
	return e.closeWhere(out, EndAdmin, func(a *allocation) bool { return a.user != nil && a.user.name == user })
}

// CloseAll closes every allocation (shutdown) and the reserved relays.
func (e *Engine) CloseAll(out *Output, now time.Time) int {
	e.setTime(now)
	n := e.closeWhere(out, EndShutdown, func(*allocation) bool { return true })
	e.scratch = e.sh.dropReservations(e.scratch[:0], e.shard)
	for _, r := range e.scratch {
		e.freeRelaySlot(r)
		out.add(Command{Op: OpCloseRelay, Relay: r})
	}
	return n
}

func (e *Engine) closeWhere(out *Output, why int, match func(*allocation) bool) int {
	var hit []*allocation
	for _, a := range e.allocs {
		if match(a) {
			hit = append(hit, a)
		}
	}
	for _, a := range hit {
		e.deleteAllocation(out, a, why)
	}
	return len(hit)
}
