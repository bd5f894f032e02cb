package auth

import (
	"bytes"
	"encoding/binary"
	"net"

	"github.com/pion/stun/v3"
)

// maxPooledMessage keeps an occasional huge (TCP-framed) message's buffer
// out of the scratch pool.
const maxPooledMessage = 4096

// Reasons for refusing a credential, logged at debug level.
const (
	reasonRealm     = "realm mismatch"
	reasonUnknown   = "unknown user"
	reasonExpired   = "credential expired"
	reasonIntegrity = "MESSAGE-INTEGRITY does not verify (wrong password or secret)"
)

// Inspect lets the Authenticator see a STUN request before pion handles it.
// edge calls it, on the goroutine that then hands the same bytes to pion,
// with every request carrying MESSAGE-INTEGRITY; other bytes are ignored.
//
// It matters only when the snapshot has several REST secrets (otherwise it
// returns at once): for a REST username it checks MESSAGE-INTEGRITY with the
// key of each secret and records the one that verifies, which the Handler
// then returns to pion. Nothing is recorded unless the integrity check
// passes. raw is not modified or retained.
func (a *Authenticator) Inspect(raw []byte) {
	s := a.cur.Load()
	if s == nil || len(s.secrets) < 2 {
		return
	}
	a.examine(s, raw, nil, false)
}

// Screen does what Inspect does and also verifies the credential of an
// authenticated request (Allocate, Refresh, CreatePermission, ChannelBind,
// Connect, ConnectionBind with MESSAGE-INTEGRITY, USERNAME, REALM and NONCE).
// If the credential is refused it returns the 401 (Unauthorized) error
// response, with the snapshot's REALM and the request's NONCE, that the
// caller must send to src instead of passing the request to pion; otherwise
// nil and the request goes to pion. pion v5.0.13 answers a refused
// credential with a bare 400, which clients take as final; RFC 8489 §9.2.4
// asks for 401. Unlike Inspect, Screen computes one HMAC per authenticated
// request even with a single secret. raw is not modified or retained; src is
// used for logging only.
func (a *Authenticator) Screen(raw []byte, src net.Addr) (reply []byte) {
	return a.examine(a.cur.Load(), raw, src, true)
}

// examine decodes an authenticated request and checks its credential. It
// records the verifying key when s has several secrets and, when screen is
// set, returns a 401 reply for a refused credential.
func (a *Authenticator) examine(s *Snapshot, raw []byte, src net.Addr, screen bool) []byte {
	if s == nil || !stun.IsMessage(raw) {
		return nil
	}
	var typ stun.MessageType
	typ.ReadValue(binary.BigEndian.Uint16(raw[0:2]))
	if typ.Class != stun.ClassRequest || !authenticatedMethod(typ.Method) {
		return nil
	}

	m := a.msgs.Get().(*stun.Message)
	defer a.putMessage(m)
	m.Raw = append(m.Raw[:0], raw...)
	if err := m.Decode(); err != nil {
		return nil // pion drops or answers it
	}
	if !m.Contains(stun.AttrMessageIntegrity) {
		return nil // pion challenges with 401 + NONCE itself
	}
	username, errU := m.Get(stun.AttrUsername)
	realm, errR := m.Get(stun.AttrRealm)
	nonce, errN := m.Get(stun.AttrNonce)
	if errU != nil || errR != nil || errN != nil {
		return nil // pion answers 400, as RFC 8489 §9.2.4 says
	}

	reason := a.verify(s, m, string(username), string(realm), screen)
	if reason == "" || !screen {
		return nil
	}
	a.logRefusal(string(username), string(realm), typ.Method, src, reason)
	resp, err := stun.Build(
		&stun.Message{TransactionID: m.TransactionID},
		stun.NewType(typ.Method, stun.ClassErrorResponse),
		stun.CodeUnauthorized,
		stun.NewRealm(s.realm),
		stun.NewNonce(string(nonce)),
	)
	if err != nil {
		return nil // cannot happen with these setters; let pion answer
	}
	return resp.Raw
}

// verify returns why m's credential is refused, or "" if it is accepted
// (or, when full is false, if there is nothing to record). With several
// secrets it records the key that verified a REST username.
func (a *Authenticator) verify(s *Snapshot, m *stun.Message, username, realm string, full bool) string {
	if realm != s.realm {
		return reasonRealm
	}
	if key, ok := s.userKey(username); ok {
		if full && stun.MessageIntegrity(key).Check(m) != nil {
			return reasonIntegrity
		}
		return ""
	}
	if len(s.secrets) == 0 {
		return reasonUnknown
	}
	expiry, _, err := parseRESTUsername(username)
	if err != nil {
		return reasonUnknown
	}
	now := a.now().Unix()
	if m.Type.Method == stun.MethodAllocate && expiry < now {
		return reasonExpired
	}
	if len(s.secrets) == 1 {
		if full && stun.MessageIntegrity(restKey(s.secrets[0], username, realm)).Check(m) != nil {
			return reasonIntegrity
		}
		return ""
	}

	// Several secrets: try the key that verified last time first, so a
	// known client costs one HMAC, then every secret.
	a.mu.Lock()
	cached := a.cache.get(s, username, now)
	a.mu.Unlock()
	if cached != nil && stun.MessageIntegrity(cached).Check(m) == nil {
		a.record(s, username, cached, expiry, now)
		return ""
	}
	for _, secret := range s.secrets {
		key := restKey(secret, username, realm)
		if cached != nil && bytes.Equal(key, cached) {
			continue
		}
		if stun.MessageIntegrity(key).Check(m) == nil {
			a.record(s, username, key, expiry, now)
			return ""
		}
	}
	return reasonIntegrity
}

// record remembers that key verified username under s, unless s has been
// swapped out meanwhile.
func (a *Authenticator) record(s *Snapshot, username string, key []byte, expiry, now int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur.Load() != s {
		return
	}
	a.cache.put(s, username, key, cacheDeadline(expiry, now), now)
}

func (a *Authenticator) putMessage(m *stun.Message) {
	if cap(m.Raw) > maxPooledMessage {
		return
	}
	m.Reset()
	a.msgs.Put(m)
}

// authenticatedMethod reports whether pion authenticates requests of method
// with long-term credentials.
func authenticatedMethod(method stun.Method) bool {
	switch method {
	case stun.MethodAllocate, stun.MethodRefresh, stun.MethodCreatePermission,
		stun.MethodChannelBind, stun.MethodConnect, stun.MethodConnectionBind:
		return true
	}
	return false
}
