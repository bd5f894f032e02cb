package engine

import (
	"log/slog"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/internal/ratelimit"
	"github.com/ferryrtc/ferry/internal/stunwire"
)

// authResult is what the credential check of a request found.
type authResult struct {
	key      []byte          // verifies the request and signs its answer
	a        *allocation     // the allocation the request is about, if any
	cred     auth.Credential // for a request checked against the snapshot
	username string
	peer     *peerConn // ConnectionBind's peer connection
}

// request handles a STUN request. Checks run as named stages, in this
// order: method, the per-address budget of unauthenticated answers
// (inside challenge and fail), nonce, credential (with the per-user-name
// guessing throttle), unknown attributes, then the method's own quota and
// peer policy checks.
func (e *Engine) request(out *Output, c *Client, m *stunwire.Message, reqLen int) {
	switch m.Type.Method {
	case stun.MethodBinding:
		e.binding(out, c, m, reqLen)
		return
	case stun.MethodAllocate, stun.MethodRefresh, stun.MethodCreatePermission, stun.MethodChannelBind:
	case stun.MethodConnect, stun.MethodConnectionBind:
		if !c.Transport.byteStream() {
			e.fail(out, c, m, reqLen, 400, nil) // RFC 6062 runs over TCP and TLS only
			return
		}
	default:
		e.fail(out, c, m, reqLen, 400, nil)
		return
	}
	r, ok := e.authenticate(out, c, m, reqLen)
	if !ok {
		return
	}
	if m.NUnknown > 0 {
		b := e.begin(out, m, stun.ClassErrorResponse)
		b.AddErrorCode(420, reason(c, true, 420))
		b.AddUnknown(m.Unknown[:m.NUnknown])
		e.send(out, c, r.key, m.HasFingerprint, reqLen)
		if m.Type.Method == stun.MethodAllocate {
			e.stats.Refused[RefusedPolicy].inc()
		}
		return
	}
	switch m.Type.Method {
	case stun.MethodAllocate:
		e.allocate(out, c, m, r, reqLen)
	case stun.MethodRefresh:
		e.refresh(out, c, m, r, reqLen)
	case stun.MethodCreatePermission:
		e.createPermission(out, c, m, r, reqLen)
	case stun.MethodChannelBind:
		e.channelBind(out, c, m, r, reqLen)
	case stun.MethodConnect:
		e.connect(out, c, m, r, reqLen)
	case stun.MethodConnectionBind:
		e.connectionBind(out, c, m, r, reqLen)
	}
}

func methodIndex(m stun.Method) int {
	switch m {
	case stun.MethodAllocate:
		return methodAllocate
	case stun.MethodRefresh:
		return methodRefresh
	case stun.MethodCreatePermission:
		return methodCreatePermission
	case stun.MethodChannelBind:
		return methodChannelBind
	case stun.MethodConnect:
		return methodConnect
	case stun.MethodConnectionBind:
		return methodConnectionBind
	}
	return methodOther
}

// Why a credential was refused, as logged.
const (
	refusedRealm     = "realm mismatch"
	refusedIntegrity = "MESSAGE-INTEGRITY does not verify (wrong password or secret)"
	refusedExpired   = "credential expired"
	refusedThrottled = "too many refused credentials for this user name from this address"
	refusedRevoked   = "credential revoked"
)

// authenticate runs the nonce and credential stages (RFC 8489 §9.2.4). A
// request from the 5-tuple of an allocation is checked with the key that
// allocation was granted (so rotating or removing a secret never ends a
// live call); any other with the snapshot in force. It answers itself when
// it refuses.
func (e *Engine) authenticate(out *Output, c *Client, m *stunwire.Message, reqLen int) (authResult, bool) {
	var r authResult
	r.a = e.lookup(out, c)
	if !m.HasIntegrity() {
		e.challenge(out, c, m, reqLen, 401)
		return r, false
	}
	username, okU := m.Get(stun.AttrUsername)
	realm, okR := m.Get(stun.AttrRealm)
	nonce, okN := m.Get(stun.AttrNonce)
	if !okU || !okR || !okN {
		e.fail(out, c, m, reqLen, 400, nil)
		return r, false
	}
	owner := c // whose address the nonce may have been sent to
	if m.Type.Method == stun.MethodConnectionBind {
		id, ok := m.Uint32(stun.AttrConnectionID)
		if !ok {
			e.fail(out, c, m, reqLen, 400, nil)
			return r, false
		}
		if shard := int(id >> 24); shard != e.shard && shard < e.cfg.Shards {
			e.reroute(out, c, m.Raw, shard)
			return r, false
		}
		p := e.peers[id]
		if p == nil || p.state != peerWaitingBind {
			e.fail(out, c, m, reqLen, 400, nil)
			return r, false
		}
		r.peer, r.a = p, p.a
		// A data connection may carry the nonce of its control connection
		// (pion's client does) or one of its own.
		owner = &p.a.client
	}
	if e.checkNonce(nonce, owner) != nonceValid && (owner == c || e.checkNonce(nonce, c) != nonceValid) {
		e.stats.StaleNonces.inc()
		e.challenge(out, c, m, reqLen, 438)
		return r, false
	}
	// The sender has proven it receives at its address: from here on a
	// refusal may count against it.
	throttle := e.failureBucket(username, c)
	if throttle != nil && throttle.Empty(e.sh.failRate, e.now, 1) {
		e.refuseCredential(out, c, m, reqLen, username, refusedThrottled, nil)
		return r, false
	}
	if string(realm) != e.cfg.Realm {
		e.refuseCredential(out, c, m, reqLen, username, refusedRealm, throttle)
		return r, false
	}
	if r.a != nil {
		if string(username) != r.a.username {
			e.fail(out, c, m, reqLen, 441, nil)
			return r, false
		}
		if !e.mac.Check(m, r.a.ltKey) {
			e.refuseCredential(out, c, m, reqLen, username, refusedIntegrity, throttle)
			return r, false
		}
		r.key, r.username = r.a.ltKey, r.a.username
		return r, true
	}
	cred, why, ok := e.sh.creds.Load().Credential(string(username))
	if !ok {
		e.refuseCredential(out, c, m, reqLen, username, why, throttle)
		return r, false
	}
	for _, k := range cred.Keys {
		if e.mac.Check(m, k) {
			r.key = k
			break
		}
	}
	if r.key == nil {
		e.refuseCredential(out, c, m, reqLen, username, refusedIntegrity, throttle)
		return r, false
	}
	if m.Type.Method == stun.MethodAllocate && cred.REST && cred.Expiry < e.wall {
		// A valid signature on an expired credential is no guess: refused,
		// not counted against the address.
		e.refuseCredential(out, c, m, reqLen, username, refusedExpired, nil)
		return r, false
	}
	if e.sh.revocations.Load().revoked(cred.User, string(username)) {
		// A valid signature on a revoked credential is no guess either.
		e.refuseCredential(out, c, m, reqLen, username, refusedRevoked, nil)
		return r, false
	}
	r.cred, r.username = cred, string(username)
	return r, true
}

// failureBucket returns the guessing throttle of one user name from c's
// address, or nil when it is off.
func (e *Engine) failureBucket(username []byte, c *Client) *ratelimit.Bucket {
	if e.sh.fails == nil {
		return nil
	}
	return e.sh.fails.BucketFor(remoteIP(c.Remote), username)
}

// refuseCredential answers 401 with REALM and a fresh NONCE, counts and
// logs the refusal (within the client log budget), and charges the
// throttle when one is given.
func (e *Engine) refuseCredential(out *Output, c *Client, m *stunwire.Message, reqLen int, username []byte, why string, throttle *ratelimit.Bucket) {
	if throttle != nil {
		throttle.Take(e.sh.failRate, e.now, 1)
	}
	e.stats.AuthFailures[methodIndex(m.Type.Method)].inc()
	if m.Type.Method == stun.MethodAllocate {
		e.stats.Refused[RefusedAuth].inc()
	}
	e.logClient(logCredentialRefused,
		slog.String("username", string(username)),
		slog.String("reason", why),
		slog.String("method", m.Type.Method.String()),
		slog.String("client", c.Remote.String()),
		slog.String("transport", c.Transport.String()))
	b := e.begin(out, m, stun.ClassErrorResponse)
	b.AddErrorCode(401, reason(c, false, 401))
	b.AddString(stun.AttrRealm, e.cfg.Realm)
	e.addNonce(b, c)
	e.send(out, c, nil, m.HasFingerprint, reqLen)
}
