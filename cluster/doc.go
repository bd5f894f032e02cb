// Package cluster joins ferry nodes through a shared Redis. This file
// set holds the registry: every node heartbeats its entry (identity,
// public host, listeners, state and load) under a key that expires a few
// seconds after its last heartbeat, and reads everybody's, so that any
// node can place new calls on the least-loaded ready nodes and send
// clients away from itself when it drains. Allocations are never
// replicated: they stay on the node that owns them, and every node keeps
// serving on its own when Redis is away (Up reports it).
//
// Keys, under the configured prefix P:
//
//	P node:ID   the node's entry, JSON (Node), expiring after TTL
//	P nodes     sorted set of node IDs scored by their entry's expiry
//	            (Unix ms), so that a reader fetches the live ones with one
//	            range query and one MGET
//
// A malformed entry (not JSON, no ID, an ID that is not its key's, an
// unknown state) is skipped and counted, never trusted.
package cluster
