package auth

import (
	"bytes"

	"github.com/pion/stun/v3"
)

// Key returns the long-term credential key that verifies the
// MESSAGE-INTEGRITY of the authenticated request raw under the current
// snapshot: the key pion's handler uses for it. It returns nil when raw is
// not such a request or no key verifies it. ferry's relay gate signs the
// answers it gives in pion's place (508 over a permission or channel quota)
// and the requests whose LIFETIME it lowers with it. It is called only on
// those rare paths; it costs one HMAC per candidate secret. raw is not
// modified or retained.
func (a *Authenticator) Key(raw []byte) []byte {
	s := a.cur.Load()
	if s == nil || !stun.IsMessage(raw) {
		return nil
	}
	m := a.msgs.Get().(*stun.Message)
	defer a.putMessage(m)
	m.Raw = append(m.Raw[:0], raw...)
	if err := m.Decode(); err != nil || !m.Contains(stun.AttrMessageIntegrity) {
		return nil
	}
	username, errU := m.Get(stun.AttrUsername)
	realm, errR := m.Get(stun.AttrRealm)
	if errU != nil || errR != nil || string(realm) != s.realm {
		return nil
	}
	var candidates [][]byte
	if key, ok := s.userKey(string(username)); ok {
		candidates = append(candidates, key)
	} else if _, _, err := parseRESTUsername(string(username)); err == nil {
		for _, secret := range s.secrets {
			candidates = append(candidates, restKey(secret, string(username), s.realm))
		}
	}
	for _, key := range candidates {
		if stun.MessageIntegrity(key).Check(m) == nil {
			return bytes.Clone(key)
		}
	}
	return nil
}

// Refuse builds the 401 (Unauthorized) answer to the authenticated request
// raw without verifying its credential: the snapshot's REALM and the
// request's NONCE, as Screen answers a refused credential. The edge sends
// it to addresses that used up their refused credentials, so password
// guessing gets the same answer whether the guess was right or wrong, and
// costs no HMAC. It returns nil when raw is not an authenticated request.
func (a *Authenticator) Refuse(raw []byte) []byte {
	s := a.cur.Load()
	if s == nil || !stun.IsMessage(raw) {
		return nil
	}
	m := a.msgs.Get().(*stun.Message)
	defer a.putMessage(m)
	m.Raw = append(m.Raw[:0], raw...)
	if err := m.Decode(); err != nil || m.Type.Class != stun.ClassRequest || !authenticatedMethod(m.Type.Method) {
		return nil
	}
	nonce, err := m.Get(stun.AttrNonce)
	if err != nil {
		return nil
	}
	resp, err := stun.Build(
		&stun.Message{TransactionID: m.TransactionID},
		stun.NewType(m.Type.Method, stun.ClassErrorResponse),
		stun.CodeUnauthorized,
		stun.NewRealm(s.realm),
		stun.NewNonce(string(nonce)),
	)
	if err != nil {
		return nil
	}
	return resp.Raw
}
