// Package udpbatch reads a UDP socket in batches: one recvmmsg(2) fills a
// ring of buffers and ReadFrom hands the datagrams out one at a time, so a
// reader that loops on ReadFrom (pion's read goroutines) makes one system
// call per burst instead of one per datagram.
//
// The source address returned with each datagram is an immutable
// *net.UDPAddr from a small per-reader cache, so steady traffic from known
// addresses allocates nothing, and a caller may keep the address (pion keeps
// a client's in its allocation 5-tuple).
package udpbatch
