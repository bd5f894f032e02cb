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
// Every STUN request then passes, in order: the Guard's per-source-IP
// limits (Allocate and unauthenticated requests over the limit are dropped;
// an address that used up its refused credentials is answered 401 without
// verification), the Guard's nonce rules, Options.Screen (the auth package
// picks the REST secret and answers refused credentials with 401 + REALM +
// NONCE, which pion v5.0.13 would answer with a bare 400) and Options.Gate
// (the relay package's quotas: 508 for permissions and channels, LIFETIME
// lowered and the request re-signed).
//
// Nonces stay pion's, which ferry cannot replace: a stale one (older than
// the Guard's lifetime, or cased for another client address, see Guard)
// has the request's MESSAGE-INTEGRITY stripped so pion answers with a fresh
// nonce in a 401, which goes out as 438.
//
// Over UDP no unauthenticated response is larger than the request it
// answers (no amplification): responses without MESSAGE-INTEGRITY lose
// SOFTWARE and the reason phrase when they would be, and are dropped if
// still too large, except the 401/438 challenges (sent at their bare
// minimum: ERROR-CODE, REALM, NONCE, about 70 bytes; the Guard's per-IP
// limit bounds how many an address gets) and Binding responses, which may
// be up to four times their request. Streams are not spoofable and are not
// capped.
//
// On TCP and TLS, a successful RFC 6062 ConnectionBind turns the
// connection into a raw data connection: bytes then pass untouched both
// ways. Options.Sign adds the MESSAGE-INTEGRITY pion leaves out of the
// ConnectionBind success and Connect errors.
//
// Counters holds per-socket counter shards, aggregated by Snapshot. The
// per-packet paths (classifying, counting, forwarding ChannelData and
// indications, the Guard's limits and nonce checks, the amplification cap)
// allocate nothing and take no lock.
package edge
