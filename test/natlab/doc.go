// Package natlab holds the NAT-lab tests (internal/natlab builds the lab):
// ferry in its own namespace with two addresses, clients behind iptables
// NATs of distinct behaviours, and assertions that STUN mapped addresses,
// `ferry probe`, turnutils_natdiscovery, hole punching and relaying behave
// as those NATs dictate.
package natlab
