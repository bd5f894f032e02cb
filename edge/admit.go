package edge

import (
	"encoding/binary"
	"net"
)

// verdict is what happens to a STUN request before pion.
type verdict uint8

const (
	admitPass  verdict = iota // hand it to pion (possibly shortened or rewritten)
	admitDrop                 // drop it silently (rate limited)
	admitReply                // send the reply instead
)

// admit runs a STUN request b (classified as in) from src, received on
// local, through ferry's checks, in order: the per-IP limits, the nonce
// rules, Screen (credentials) and Gate (quotas). It returns the request's
// new length when the stale-nonce rule stripped its MESSAGE-INTEGRITY (b
// is edited in place), or a reply to send instead. Everything but Screen's
// and Gate's own work is allocation-free.
func (cfg *config) admit(b []byte, in info, src, local net.Addr, sh *shard, stale *staleRing) (n int, reply []byte, v verdict) {
	n = len(b)
	g := cfg.guard
	ip := ipOf(src)
	if in.integrity && g.authBlocked(ip) {
		sh.authLimited.Add(1)
		if cfg.refuse != nil {
			if reply := cfg.refuse(b); reply != nil {
				return n, reply, admitReply
			}
		}
		return n, nil, admitDrop
	}
	if (in.typ == typeAllocateReq || !in.integrity && in.kind == kindRequest) && !g.allowAttempt(ip) {
		sh.rateLimited.Add(1)
		return n, nil, admitDrop
	}
	if !in.integrity {
		return n, nil, admitPass
	}
	if in.nonceOff > 0 && g.checksNonces() {
		switch g.checkNonce(b[in.nonceOff:in.nonceOff+in.nonceLen], ip) {
		case nonceExpired:
			sh.staleNonces.Add(1)
			return stripIntegrity(b, in, stale), nil, admitPass
		case nonceForeign:
			sh.foreignNonces.Add(1)
			return stripIntegrity(b, in, stale), nil, admitPass
		}
	}
	if cfg.screen != nil {
		if reply := cfg.screen(b, src); reply != nil {
			sh.authRefused.Add(1)
			g.authFailed(ip)
			return n, reply, admitReply
		}
	}
	if cfg.gate != nil {
		if reply := cfg.gate(b, src, local); reply != nil {
			sh.gateReplies.Add(1)
			return n, reply, admitReply
		}
	}
	return n, nil, admitPass
}

// stripIntegrity cuts b before its MESSAGE-INTEGRITY (dropping it and
// whatever follows: MESSAGE-INTEGRITY-SHA256, FINGERPRINT), so pion treats
// the request as unauthenticated and answers with a 401 carrying a fresh
// nonce, which the writer turns into 438 thanks to stale. It returns the
// new length.
func stripIntegrity(b []byte, in info, stale *staleRing) int {
	binary.BigEndian.PutUint16(b[2:4], uint16(in.miOff-stunHeaderSize))
	stale.add(b[8:stunHeaderSize])
	return in.miOff
}
