// Package udpbatch is ferry's UDP socket I/O on the packet path.
//
// Reads are batched: one recvmmsg(2) fills a ring of buffers and ReadFrom
// hands the datagrams out one at a time, so a reader that loops on ReadFrom
// (pion's read goroutines) makes one system call per burst instead of one
// per datagram. The source address returned with each datagram is an
// immutable *net.UDPAddr from a small per-reader cache, so steady traffic
// from known addresses allocates nothing, and a caller may keep the address
// (pion keeps a client's in its allocation 5-tuple).
//
// Writes go out with sendto(2) made as a raw system call on the
// non-blocking socket, outside the Go scheduler's system-call accounting
// (see writer for why); waiting for a full send buffer, deadlines and
// closing still go through the runtime poller. Neither direction
// allocates.
package udpbatch
