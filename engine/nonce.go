package engine

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
)

// Nonces are stateless (RFC 8489 §9.2): a version byte, the expiry in Unix
// seconds and an HMAC over both and the address the nonce was sent to
// (transport, IP and port) under the shared nonce key, truncated to 12
// bytes, in unpadded base64url: 23 printable characters. A nonce is valid
// until its expiry and only from the address it was sent to, so a request
// that carries a valid nonce has proven that its sender receives at its
// source address. Rotating the key (or a restart, unless a cluster shares
// it) turns every nonce stale: the client retries after a 438.
const (
	nonceVersion = 1
	nonceRaw     = 1 + 4 + 12
	nonceLen     = 23 // base64url of 17 bytes, unpadded
)

var nonceEncoding = base64.RawURLEncoding

// nonceInput writes the HMAC input for a nonce to c at expiry into b.
func (e *Engine) nonceInput(b *[64]byte, c *Client, expiry uint32) []byte {
	b[0] = nonceVersion
	binary.BigEndian.PutUint32(b[1:], expiry)
	n := 5
	if e.sh.cfg.BindNonces {
		b[5] = byte(c.Transport)
		a := c.Remote.Addr().Unmap().As16()
		copy(b[6:], a[:])
		binary.BigEndian.PutUint16(b[22:], c.Remote.Port())
		n = 24
	}
	return b[:n]
}

// appendNonce appends a fresh nonce for c to dst.
func (e *Engine) appendNonce(dst []byte, c *Client) []byte {
	return e.appendNonceFor(dst, c, uint32(e.wall+int64(e.sh.cfg.NonceLifetime.Seconds())))
}

func (e *Engine) appendNonceFor(dst []byte, c *Client, expiry uint32) []byte {
	var in [64]byte
	var raw [nonceRaw]byte
	key := *e.sh.nonceKey.Load()
	sum := e.mac.Sum(key, e.nonceInput(&in, c, expiry))
	copy(raw[:5], in[:5])
	copy(raw[5:], sum[:12])
	return nonceEncoding.AppendEncode(dst, raw[:])
}

// nonceVerdict is what checkNonce found.
type nonceVerdict uint8

const (
	nonceValid nonceVerdict = iota
	nonceStale              // expired, signed with another key, or sent to another address
	nonceBad                // not one of ferry's nonces at all
)

// checkNonce judges a NONCE value from a request of c.
func (e *Engine) checkNonce(nonce []byte, c *Client) nonceVerdict {
	if len(nonce) != nonceLen {
		return nonceBad
	}
	var raw [nonceRaw + 1]byte
	n, err := nonceEncoding.Decode(raw[:], nonce)
	if err != nil || n != nonceRaw || raw[0] != nonceVersion {
		return nonceBad
	}
	expiry := binary.BigEndian.Uint32(raw[1:5])
	if int64(expiry) < e.wall {
		return nonceStale
	}
	var in [64]byte
	key := *e.sh.nonceKey.Load()
	sum := e.mac.Sum(key, e.nonceInput(&in, c, expiry))
	if subtle.ConstantTimeCompare(sum[:12], raw[5:nonceRaw]) != 1 {
		return nonceStale
	}
	return nonceValid
}

// remoteKey is the per-address key of the rate limit tables.
func remoteIP(ap netip.AddrPort) netip.Addr { return ap.Addr().Unmap() }
