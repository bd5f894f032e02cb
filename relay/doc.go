// Package relay owns the peer address policy: which peers a relay may
// reach. By default only globally reachable unicast addresses are admitted
// (IANA's special-purpose registry for IPv4 and IPv6, IPv4 embedded in
// IPv6 judged by the IPv4 address), with allow and deny lists on top;
// ferry's own addresses are refused, except its relay addresses, which are
// reachable on relay ports only, so two clients relaying through one ferry
// reach each other but nobody reaches ferry's listeners or other services
// on its host. A Policy is immutable: the engine swaps in a new one when
// ferry's own addresses change.
package relay
