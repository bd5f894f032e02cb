package engine

import (
	"net/netip"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

// arenaSize is the first capacity of an Output's arena.
const arenaSize = 16 << 10

// maxAmplification bounds an unauthenticated answer over UDP, where the
// source address may be spoofed: at most this many times the request's
// size, and never above minAmplificationCap for the smallest requests.
// Answers that would be larger are dropped and counted (fail closed).
const (
	maxAmplification    = 4
	minAmplificationCap = 100
)

// begin starts a response of class to request m in out's arena.
func (e *Engine) begin(out *Output, m *stunwire.Message, class stun.MessageClass) *stunwire.Builder {
	if out.arena == nil {
		out.arena = make([]byte, 0, arenaSize)
	}
	e.b.Start(out.arena, stun.NewType(m.Type.Method, class), m.TransactionID)
	return &e.b
}

// send finishes the response begun and queues it to c from its local
// address: signed with key when it is not nil, with FINGERPRINT when the
// request had one. An unsigned answer over UDP larger than the
// amplification cap for a request of reqLen bytes is dropped instead.
func (e *Engine) send(out *Output, c *Client, key []byte, fp bool, reqLen int) {
	e.sendFrom(out, c, c.Socket, c.Local, key, fp, reqLen)
}

// sendFrom is send from another socket and address (RFC 5780
// CHANGE-REQUEST).
func (e *Engine) sendFrom(out *Output, c *Client, sock SocketID, from netip.AddrPort, key []byte, fp bool, reqLen int) {
	b := &e.b
	if key != nil {
		b.Integrity(e.mac, key)
	}
	if fp {
		b.Fingerprint()
	}
	buf := b.Finish()
	msg := b.Message()
	if key == nil && c.Transport == UDP && len(msg) > max(maxAmplification*reqLen, minAmplificationCap) {
		out.arena = buf[:len(buf)-len(msg)]
		e.stats.Dropped[DropAmplification].inc()
		return
	}
	out.arena = buf
	to := *c
	to.Socket, to.Local = sock, from
	out.add(Command{Op: OpSendClient, Client: to, Data: msg})
}

// DrainingReason is the reason phrase of the 508 a draining server answers
// Allocate with. RFC 8489 §14.8 leaves the phrase to the server ("meant for
// diagnostic purposes"): a distinct one lets a client or `ferry probe` tell
// "this server is shutting down, use another" from "no relay port free"
// (Insufficient Capacity), which share the code.
const DrainingReason = "Server Draining"

// reason returns the reason phrase for code, or "" for an unauthenticated
// answer over UDP, which is kept as small as it can be.
func reason(c *Client, signed bool, code int) string {
	if c.Transport == UDP && !signed {
		return ""
	}
	switch code {
	case 300:
		return "Try Alternate"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 420:
		return "Unknown Attribute"
	case 437:
		return "Allocation Mismatch"
	case 438:
		return "Stale Nonce"
	case 440:
		return "Address Family not Supported"
	case 441:
		return "Wrong Credentials"
	case 442:
		return "Unsupported Transport Protocol"
	case 443:
		return "Peer Address Family Mismatch"
	case 446:
		return "Connection Already Exists"
	case 447:
		return "Connection Timeout or Failure"
	case 486:
		return "Allocation Quota Reached"
	case 500:
		return "Server Error"
	case 508:
		return "Insufficient Capacity"
	}
	return ""
}

// allowUnauthenticated takes one answer from c's address's budget of
// answers given before a credential is checked. Only UDP is limited:
// a connection's address is proven by its handshake.
func (e *Engine) allowUnauthenticated(c *Client) bool {
	if c.Transport != UDP || e.sh.unauth == nil {
		return true
	}
	if e.sh.unauth.Bucket(remoteIP(c.Remote)).Take(e.sh.unauthRate, e.now, 1) {
		return true
	}
	e.stats.Dropped[DropRateLimit].inc()
	return false
}

// fail answers m with error code, signed with key when it is not nil.
// Unsigned answers count against the address's unauthenticated budget.
func (e *Engine) fail(out *Output, c *Client, m *stunwire.Message, reqLen, code int, key []byte) {
	e.failWith(out, c, m, reqLen, code, reason(c, key != nil, code), key)
}

// failWith is fail with the reason phrase given.
func (e *Engine) failWith(out *Output, c *Client, m *stunwire.Message, reqLen, code int, phrase string, key []byte) {
	if key == nil && !e.allowUnauthenticated(c) {
		return
	}
	b := e.begin(out, m, stun.ClassErrorResponse)
	b.AddErrorCode(code, phrase)
	e.send(out, c, key, m.HasFingerprint, reqLen)
}

// challenge answers m with 401 or 438 carrying REALM and a fresh NONCE
// for c: what a client needs to (re)try with its credential.
func (e *Engine) challenge(out *Output, c *Client, m *stunwire.Message, reqLen, code int) {
	if !e.allowUnauthenticated(c) {
		return
	}
	b := e.begin(out, m, stun.ClassErrorResponse)
	b.AddErrorCode(code, reason(c, false, code))
	b.AddString(stun.AttrRealm, e.cfg.Realm)
	e.addNonce(b, c)
	e.send(out, c, nil, m.HasFingerprint, reqLen)
}

// addNonce appends a NONCE for c.
func (e *Engine) addNonce(b *stunwire.Builder, c *Client) {
	var v [nonceLen]byte
	b.Add(stun.AttrNonce, e.appendNonce(v[:0], c))
}
