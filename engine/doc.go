// Package engine is ferry's TURN protocol core (RFC 8489 STUN, RFC 8656
// TURN, RFC 6156 IPv6, RFC 6062 TCP relays, RFC 5780 on the Binding path).
// It does no I/O: the data plane hands it events — a client packet with its
// 5-tuple, a datagram or connection from a relay socket, the outcome of a
// socket it asked for, a timer tick — each with the current time, and it
// answers with commands in an Output: send to a client, send from a relay
// to a peer, open or close a relay socket, dial a peer, join a connection,
// close one. It starts no goroutines and reads no clock, so it is
// deterministic and tested by simulation.
//
// It owns the one allocation table: allocations, their relay sockets,
// permissions (5 minutes) and channels (10 minutes), lifetimes, RFC 6062
// peer connections, and the client connections that hold no allocation.
// Requests pass named stages in a fixed order, each counting its own
// refusals in Stats: the method; the per-address budget of answers given
// before a credential is checked (UDP only); the nonce (stateless: an HMAC
// over the client's transport address and an expiry, so a stale or
// foreign nonce is a plain 438); the credential (checked once per request:
// against the snapshot in force for an Allocate, against the key granted
// at Allocate for everything else, so rotating secrets never ends a live
// call) with a guessing throttle per user name and address that only ever
// follows a valid nonce; unknown attributes; then quotas and the peer
// policy of the method.
//
// A server runs one Engine per data plane loop (a shard): the data plane
// steers each client 5-tuple to one shard and owns the shard's relay
// sockets in the same loop, so the per-packet paths (ChannelData, Send and
// Data indications, peer datagrams) take no lock and allocate nothing.
// What spans shards — quotas per user and in total, bandwidth per user,
// per-address limits, RESERVATION-TOKENs, the credentials, the peer
// policy, the drain switch and the counters — lives in Shared.
package engine
