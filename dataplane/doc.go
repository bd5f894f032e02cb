// Package dataplane owns ferry's sockets and event loops and runs the
// engine on them.
//
// A Server runs one loop per shard of the engine. Each loop is a goroutine
// parked in Go's netpoller on its own epoll descriptor, which holds the
// loop's UDP listener sockets (one socket of every SO_REUSEPORT set, so the
// kernel steers each client 5-tuple to one loop), the relay sockets of its
// shard's allocations, an eventfd for its inbox and a timerfd for the
// engine's timers. When the epoll descriptor is readable the loop reads
// each ready socket with one recvmmsg (64 datagrams at most, with
// engine.Headroom before each so ChannelData and Data indications are
// written in place), hands the datagrams to its engine, and carries out the
// commands: datagrams to one socket go out together with sendmmsg, answers
// on wildcard sockets carry IP_PKTINFO so they leave from the address the
// client sent to. No goroutine and no buffer per allocation; nothing
// allocated per datagram.
//
// TCP, TLS and DTLS client connections have a reader goroutine (handshake,
// framing) and a writer goroutine each; their frames reach their loop
// through its inbox. On a PROXY protocol listener a connection is
// registered only once its header is read (in a goroutine of its own, from
// a trusted proxy only, before TLS), as the client the header names.
// RFC 6062 TCP relays listen and dial with goroutines,
// and a bound data connection is copied by two goroutines, counted in the
// allocation's Traffic and paced by its Shaper.
package dataplane
