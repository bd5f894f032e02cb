// Package rfc5780 answers STUN Binding requests on ferry's UDP listeners with
// the attributes of RFC 5780 (NAT behaviour discovery), in front of pion,
// which only knows XOR-MAPPED-ADDRESS.
//
// A Responder serves one listener. Its Wrap sits between pion and the
// client-facing socket (pion -> rfc5780 -> edge -> socket): Binding requests
// are answered right there on the reading goroutine and never reach pion;
// every other datagram is returned unchanged, with no allocation. A success
// response carries XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, RESPONSE-ORIGIN,
// OTHER-ADDRESS (when the listener has alternates), SOFTWARE (when set) and
// FINGERPRINT.
//
// With Alternates — sockets on the alternate IP and port, opened by the
// caller: A2:P1, A1:P2 and A2:P2 next to the primary A1:P1 — a request's
// CHANGE-REQUEST (change IP, change port, or both) is answered from the
// matching socket, and Binding requests arriving on an alternate socket are
// answered too (by the Responder's own goroutines) with RESPONSE-ORIGIN that
// socket and OTHER-ADDRESS the one opposite in both IP and port (RFC 5780
// §6.1, Table 1). Without alternates a CHANGE-REQUEST gets 420 (Unknown
// Attribute) with UNKNOWN-ATTRIBUTES naming it, as §6.1 prescribes, and no
// OTHER-ADDRESS is sent. RESPONSE-PORT is not supported and is refused the
// same way; PADDING is ignored.
//
// Counters counts answers with atomics; nothing per packet logs or locks.
package rfc5780
