// Package bench is a TURN load generator that works against any TURN server
// (ferry, coturn, pion's examples).
//
// Setup speaks STUN/TURN with pion/stun: for each allocation it opens a
// client socket (UDP, or a TCP control connection), sends Allocate (answering
// the 401 challenge with long-term credentials or TURN REST credentials it
// mints from a shared secret), CreatePermission and ChannelBind to an echo
// peer that the generator runs itself: one UDP socket per allocation,
// connected to that allocation's relayed address.
//
// The hot loop then bypasses any STUN library: it writes raw ChannelData
// (4-byte header, a send timestamp and sequence number, padding to the
// configured size) with sendmmsg and reads with recvmmsg through
// golang.org/x/net/ipv4's WriteBatch/ReadBatch, on connected sockets and
// preallocated buffers, so sending and receiving allocate nothing and the
// generator costs less per packet than the server it measures.
//
// Modes: [ModeRelay] at a fixed offered rate per allocation (paced in small
// bursts every Config.Tick, the allocations' schedules spread over one packet
// interval) or, with Rate 0, as fast as a window of outstanding packets per
// allocation allows; [ModeAllocs] opens and releases (Refresh with LIFETIME
// 0) allocations as fast as it can, each attempt from a new socket (and,
// against an IPv4 loopback server or with Config.SourceNet, a new source
// address, so no client 5-tuple repeats); [ModeIdle] opens up to 65536
// allocations, each with a permission and a channel (to peer addresses of
// their own, where nothing listens), holds them without traffic and reports
// the server's RSS growth per allocation. Given the server's pid, Run samples
// /proc to report the server's CPU time per relayed packet (or per
// allocation) and its RSS growth per allocation; given a cgroup
// (Config.Cgroup), also that cgroup's CPU time and the ksoftirqd threads'.
// A relayed packet is one datagram through the server: a round trip is two.
//
// Config.LocalIP binds the client sockets and echo peers to one address
// (e.g. 127.0.0.2), so the generator's ephemeral ports never meet the
// server's relay ports. Run raises RLIMIT_NOFILE to what the run needs.
//
// Every run is bounded by Config.Duration and optionally by Config.Count,
// and refuses targets outside 127.0.0.0/8 and ::1 unless AllowRemote is set.
package bench
