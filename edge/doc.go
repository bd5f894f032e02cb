// Package edge owns ferry's client-facing socket wrappers, the layer between
// the sockets the caller opened and pion's turn.Server.
//
// WrapPacketConn (UDP) and WrapListener (TCP, TLS, DTLS) classify every
// packet or frame a client sends before pion sees it: ChannelData and
// well-formed STUN pass, anything else is dropped and counted (datagrams) or
// ends the connection (streams, whose framing cannot recover). Stream
// connections are framed here, one whole TURN frame per Read, so pion's
// STUNConn on top sees clean frames; TLS and DTLS handshakes run lazily on
// the first Read with a deadline instead of in Accept, a connection that
// sends no complete frame in time is closed, and closing the listener closes
// the connections it accepted.
//
// On the way out, STUN responses get ferry's fix-ups: the 401 pion sends for
// a ChannelBind to a peer refused by the permission handler becomes the 403
// RFC 8656 asks for, and a SOFTWARE attribute is added to Binding success
// and error responses that carry no MESSAGE-INTEGRITY (FINGERPRINT is
// recomputed). ChannelData and indications pass untouched.
//
// Options.Screen sees every STUN request carrying MESSAGE-INTEGRITY before
// pion does: the auth package picks the REST secret from it and answers
// refused credentials itself with 401 + REALM + NONCE, which pion v5.0.13
// would answer with a bare 400. Counters holds
// per-socket counter shards, aggregated by Snapshot.
//
// The per-packet paths (classifying, counting, forwarding ChannelData and
// indications) allocate nothing and take no lock.
package edge
