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
// against an IPv4 loopback server, a new 127/8 source address, so no client
// 5-tuple repeats). Given the server's pid, Run samples /proc to report the
// server's CPU time per relayed packet (or per allocation) and its RSS growth
// per allocation. A relayed packet is one datagram through the server: a
// round trip is two.
//
// Every run is bounded by Config.Duration and optionally by Config.Count,
// and refuses targets outside 127.0.0.0/8 and ::1 unless AllowRemote is set.
package bench
