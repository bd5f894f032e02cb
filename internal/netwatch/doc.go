// Package netwatch tells ferry when the host's own IP addresses change, so
// that the peer policy, which refuses relaying to ferry's own addresses,
// follows addresses added or removed after start: IPv6 temporary
// addresses, a cloud IP attached to a running instance, an interface going
// down.
//
// Addrs lists the unicast addresses configured on interfaces that are up.
// Watch subscribes to rtnetlink's address and link notifications
// (RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK), waits for a burst
// of them to settle (Options.Debounce), re-reads the whole list with Addrs
// and calls back with it when it differs from the last list delivered. It
// keeps no state from the individual messages: a lost notification (the
// socket's receive queue overran, ENOBUFS) costs nothing more than another
// re-read.
//
// On Linux, Addrs reads the addresses with two rtnetlink dumps (links, for
// their up flag, and addresses) on one socket, instead of net.Interfaces,
// which dumps every address once per interface. It leaves out addresses
// whose IPv6 duplicate address detection failed: those belong to another
// host on the link. Elsewhere Addrs uses net.Interfaces, and Watch returns
// an error wrapping errors.ErrUnsupported.
//
// Network namespaces: the sockets of Addrs and Watch are opened in the
// network namespace of the thread that opens them. In a process whose
// threads all live in one namespace, the normal case and also a process
// started by `ip netns exec`, that is the process's namespace. A thread
// moved into another namespace with setns(2) is not supported: Go moves
// goroutines between threads, so Addrs, called again from Watch's
// goroutine, could read another namespace than Watch's socket listens to.
// The tests therefore run the watcher in a child process started with
// `ip netns exec`.
package netwatch
