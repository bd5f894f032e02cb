// Package relay owns the relay side of ferry's TURN server: the peer address
// policy (which peers a relay may reach: globally reachable unicast only by
// default, with allow/deny lists, IPv4 embedded in IPv6 judged by the IPv4
// address, and ferry's own addresses refused) and its pion PermissionHandler,
// and the relay port allocator (pion's RelayAddressGenerator: per-family bind
// and advertised addresses, a port range that is scanned to the end before
// giving up, exact requested ports, TCP relay listeners and RFC 6062 Connect
// dialing checked against the policy).
package relay
