// Package stunwire is ferry's one STUN and ChannelData wire layer (RFC 8489,
// RFC 8656, RFC 6062, RFC 6156, RFC 5780), built on pion/stun's message
// type and constants.
//
// Parse decodes untrusted bytes into a stun.Message without copying them
// and records where MESSAGE-INTEGRITY and FINGERPRINT sit, so that
// attributes after MESSAGE-INTEGRITY (which it does not protect) are never
// read, and a FINGERPRINT that does not verify rejects the message.
// Builder appends responses and indications to a caller's buffer. MAC
// computes HMAC-SHA1 MESSAGE-INTEGRITY with a reused digest. XOR address
// helpers read and write netip.AddrPort values. None of the per-packet
// functions allocates.
package stunwire
