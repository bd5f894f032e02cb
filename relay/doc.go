// Package relay owns the relay side of ferry's TURN server: the peer address
// policy (which peers a relay may reach: globally reachable unicast only by
// default, with allow/deny lists, IPv4 embedded in IPv6 judged by the IPv4
// address, ferry's own addresses refused except its relay addresses, which
// are reachable on relay ports only so two clients can relay to each other
// through one ferry) and its pion PermissionHandler,
// and the relay port allocator (pion's RelayAddressGenerator: per-family bind
// and advertised addresses, a port range that is scanned to the end before
// giving up, exact requested ports, TCP relay listeners and RFC 6062 Connect
// dialing checked against the policy), and the quotas: Quota counts
// allocations per user (pion's QuotaHandler from NewQuotaHandler, 486) and
// in total (the allocator refuses with ErrCapacity, 508) by the relay
// sockets themselves, and caps relayed bandwidth per allocation and per
// user (lock-free token buckets in the relay socket wrappers: datagrams
// over the cap dropped and counted, TCP peer connections slowed);
// RequestGate enforces what pion has no hook for from the edge layer:
// permissions and channels per allocation (signed 508) and the maximum
// LIFETIME (lowered in the request, which it re-signs); and the Tracker,
// which counts each allocation's relayed packets and bytes with atomics on
// its own relay socket wrapper, joins them with pion's events for the admin
// API and metrics, and closes allocations on request.
package relay
