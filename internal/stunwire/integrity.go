package stunwire

import (
	"crypto/md5"  //nolint:gosec // RFC 8489 long-term keys are MD5(username:realm:password).
	"crypto/sha1" //nolint:gosec // MESSAGE-INTEGRITY is HMAC-SHA1 (RFC 8489 §14.5).
	"crypto/subtle"
	"encoding/binary"
	"hash"
)

// LongTermKey is MD5(username ":" realm ":" password), the key of RFC 8489
// long-term credentials (§9.2.2).
func LongTermKey(username, realm, password string) [16]byte {
	h := md5.New() //nolint:gosec // see import
	h.Write([]byte(username))
	h.Write([]byte{':'})
	h.Write([]byte(realm))
	h.Write([]byte{':'})
	h.Write([]byte(password))
	var k [16]byte
	h.Sum(k[:0])
	return k
}

// MAC computes HMAC-SHA1 with one reused digest, so checking and signing
// messages allocates nothing. It is not safe for concurrent use: keep one
// per goroutine.
type MAC struct {
	h     hash.Hash
	pad   [64]byte
	inner [sha1.Size]byte
	out   [sha1.Size]byte
	lenb  [2]byte
}

// NewMAC returns a MAC.
func NewMAC() *MAC { return &MAC{h: sha1.New()} } //nolint:gosec // see import

// hmac computes HMAC-SHA1(key, p0 || p1 || p2) into m.out: STUN integrity
// covers the header with its length field rewritten, so a message is
// hashed in three pieces.
func (m *MAC) hmac(key, p0, p1, p2 []byte) []byte {
	if len(key) > 64 {
		m.h.Reset()
		m.h.Write(key)
		key = m.h.Sum(m.out[:0])
	}
	m.padKey(key, 0x36)
	m.h.Reset()
	m.h.Write(m.pad[:])
	m.h.Write(p0)
	m.h.Write(p1)
	m.h.Write(p2)
	inner := m.h.Sum(m.inner[:0])
	m.padKey(key, 0x5c)
	m.h.Reset()
	m.h.Write(m.pad[:])
	m.h.Write(inner)
	return m.h.Sum(m.out[:0])
}

// padKey fills m.pad with key XOR pad, zero-extended to the block size.
func (m *MAC) padKey(key []byte, pad byte) {
	for i := range m.pad {
		m.pad[i] = pad
	}
	for i, k := range key {
		m.pad[i] ^= k
	}
}

// Check verifies the MESSAGE-INTEGRITY of msg (parsed by Parse) with key:
// HMAC-SHA1 over the message up to the attribute, with the header's length
// field covering the attribute (RFC 8489 §14.5). It is false when msg
// carries none.
func (m *MAC) Check(msg *Message, key []byte) bool {
	off := msg.IntegrityOffset
	if off == 0 {
		return false
	}
	raw := msg.Raw
	binary.BigEndian.PutUint16(m.lenb[:], uint16(off+AttrHeaderSize+integritySize-HeaderSize))
	got := m.hmac(key, raw[0:2], m.lenb[:], raw[4:off])
	want := raw[off+AttrHeaderSize : off+AttrHeaderSize+integritySize]
	return subtle.ConstantTimeCompare(got, want) == 1
}

// appendIntegrity appends MESSAGE-INTEGRITY to the message that starts at
// dst[start], signing with key.
func (m *MAC) appendIntegrity(dst []byte, start int, key []byte) []byte {
	msg := dst[start:]
	binary.BigEndian.PutUint16(m.lenb[:], uint16(len(msg)+AttrHeaderSize+integritySize-HeaderSize))
	sum := m.hmac(key, msg[0:2], m.lenb[:], msg[4:])
	dst = binary.BigEndian.AppendUint16(dst, 0x0008)
	dst = binary.BigEndian.AppendUint16(dst, integritySize)
	return append(dst, sum...)
}

// Sum returns HMAC-SHA1(key, data), valid until the next call.
func (m *MAC) Sum(key, data []byte) []byte { return m.hmac(key, data, nil, nil) }
