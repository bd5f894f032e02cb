package engine

import (
	"net/netip"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

// Redirection (RFC 8656 §6.2, RFC 8489 §10): a node of a cluster that is
// draining, or has reached its server-wide allocation quota, answers an
// authenticated Allocate with 300 (Try Alternate) and the address of a
// ready node in ALTERNATE-SERVER instead of 508, so the client allocates
// there at once. The alternates come from the cluster's registry
// (SetAlternates); a node without one answers 508 as before.

// Alternate is where a client of one transport and address family is sent.
type Alternate struct {
	// Addr is the other node's listener of the client's transport, in the
	// client's address family.
	Addr netip.AddrPort
	// Domain, for TLS and DTLS clients, is the other node's name
	// (ALTERNATE-DOMAIN), which the client checks its certificate against.
	Domain string
}

// Alternates are the redirection targets by client transport and family
// (index 0 IPv4, 1 IPv6); a zero Addr is none.
type Alternates [numTransports][2]Alternate

// SetAlternates replaces the redirection targets; nil: none.
func (s *Shared) SetAlternates(a *Alternates) { s.alternates.Store(a) }

// alternate returns where to send client c, if anywhere.
func (e *Engine) alternate(c *Client) (Alternate, bool) {
	all := e.sh.alternates.Load()
	if all == nil || c.Transport >= numTransports {
		return Alternate{}, false
	}
	a := all[c.Transport][familyIndex(familyOf(c.Remote.Addr()))]
	return a, a.Addr.IsValid()
}

// tryAlternate answers m with 300 and ALTERNATE-SERVER a, signed with key.
func (e *Engine) tryAlternate(out *Output, c *Client, m *stunwire.Message, reqLen int, key []byte, a Alternate) {
	b := e.begin(out, m, stun.ClassErrorResponse)
	b.AddErrorCode(300, "Try Alternate")
	b.AddAddress(stun.AttrAlternateServer, a.Addr, false)
	// REALM and a NONCE the client takes to the alternate (libwebrtc does):
	// valid there when the cluster shares its nonce key
	// (cluster.nonce-secret), else the alternate challenges once more.
	b.AddString(stun.AttrRealm, e.cfg.Realm)
	e.addNonce(b, c)
	if a.Domain != "" && (c.Transport == TLS || c.Transport == DTLS) {
		b.AddString(stun.AttrAlternateDomain, a.Domain)
	}
	e.send(out, c, key, m.HasFingerprint, reqLen)
}
