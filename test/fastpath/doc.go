// Package fastpath holds the end-to-end tests of ferry's kernel fast path
// (package offload driven by the engine): `ferry serve --relay-offload tc`
// runs in a network namespace of its own, the clients and peers in another,
// joined by a veth pair with transmit checksum offload off (so a wrong UDP
// checksum shows as InCsumErrors at the receiver). The tests check that
// channel traffic is relayed byte-exact by the kernel both ways over IPv4
// and IPv6 while ferry's own CPU stays idle, that every case the program
// leaves to user space is still handled by ferry, and that the entries
// follow the allocations: deallocation, admin close and drain remove them,
// a denied peer never gets one, a refused rebind leaves it in place.
//
// They need root, ip(8), ethtool and a kernel that loads BPF (tcx); they
// skip otherwise, and fail with CI=true.
package fastpath
