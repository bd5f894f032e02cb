// Package probe is the client side of `ferry probe`: it checks a STUN or
// TURN server from where the operator (or a test) stands and reports what it
// found, step by step with timings.
//
// STUN probes a server's Binding answers and, when the server has an
// alternate address (RFC 5780 OTHER-ADDRESS), determines the NAT's mapping
// behaviour (§4.3), filtering behaviour (§4.4) and hairpinning (§4.5).
// TURN allocates with long-term or TURN REST credentials, creates a
// permission, relays a round trip through the allocation (to the probe's own
// second socket, or to a given echoing peer) with Send/Data indications and
// again over a channel, and releases the allocation.
//
// When a step fails, the report names it, its cause (the error the server
// answered, or its silence, read with what the probe knows: the peer's kind
// of address, whether the credential came from a REST secret, the reason
// phrase ferry gives a draining 508) and a fix naming the server setting
// involved (relay.allowed-peers, quota.user-allocations, relay.ports, ...).
//
// Traffic goes only to the target the caller names, to the alternate
// address that target advertises in OTHER-ADDRESS, to the relayed address
// it allocates, and (for hairpinning) to the probe's own mapped address.
// Client is the small UDP TURN client under TURN, exported for tests that
// need to drive an allocation by hand.
package probe
