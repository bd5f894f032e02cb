package stunwire

import (
	"encoding/binary"
	"net/netip"

	"github.com/pion/stun/v3"
)

// MaxSoftware is the longest SOFTWARE value RFC 8489 allows, in bytes.
const MaxSoftware = 763

// Builder appends one STUN message to a byte slice. The zero value is not
// ready: call Start. It allocates only when the slice must grow.
type Builder struct {
	buf   []byte
	start int
	tid   [12]byte
}

// Start begins a message of type typ with transaction ID tid at the end of
// dst.
func (b *Builder) Start(dst []byte, typ stun.MessageType, tid [12]byte) {
	b.buf, b.start, b.tid = dst, len(dst), tid
	b.buf = binary.BigEndian.AppendUint16(b.buf, typ.Value())
	b.buf = append(b.buf, 0, 0)
	b.buf = binary.BigEndian.AppendUint32(b.buf, MagicCookie)
	b.buf = append(b.buf, tid[:]...)
}

// Len is the size of the message so far.
func (b *Builder) Len() int { return len(b.buf) - b.start }

// header appends an attribute header for n value bytes.
func (b *Builder) header(t stun.AttrType, n int) {
	b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(t))
	b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(n))
}

func (b *Builder) pad() {
	for (len(b.buf)-b.start)%4 != 0 {
		b.buf = append(b.buf, 0)
	}
}

// Add appends an attribute with value v, padded.
func (b *Builder) Add(t stun.AttrType, v []byte) {
	b.header(t, len(v))
	b.buf = append(b.buf, v...)
	b.pad()
}

// AddString appends an attribute with value s, padded.
func (b *Builder) AddString(t stun.AttrType, s string) {
	b.header(t, len(s))
	b.buf = append(b.buf, s...)
	b.pad()
}

// AddUint32 appends a 4-byte attribute.
func (b *Builder) AddUint32(t stun.AttrType, v uint32) {
	b.header(t, 4)
	b.buf = binary.BigEndian.AppendUint32(b.buf, v)
}

// AddSoftware appends SOFTWARE with s cut to MaxSoftware bytes at a UTF-8
// boundary; nothing for an empty s.
func (b *Builder) AddSoftware(s string) {
	if s == "" {
		return
	}
	if len(s) > MaxSoftware {
		n := MaxSoftware
		for n > 0 && s[n]&0xC0 == 0x80 {
			n--
		}
		s = s[:n]
	}
	b.AddString(stun.AttrSoftware, s)
}

// AddAddress appends a MAPPED-ADDRESS-style attribute (RFC 8489 §14.1),
// XORed (§14.2) when xor is set.
func (b *Builder) AddAddress(t stun.AttrType, ap netip.AddrPort, xor bool) {
	at := len(b.buf)
	b.buf = append(b.buf, make([]byte, 8+16)...)[:at+8+16]
	tid := b.tid
	n := putAddress(b.buf[at:], t, ap, &tid, xor)
	b.buf = b.buf[:at+n]
}

// AddXOR appends an XOR-*-ADDRESS attribute.
func (b *Builder) AddXOR(t stun.AttrType, ap netip.AddrPort) { b.AddAddress(t, ap, true) }

// AddErrorCode appends ERROR-CODE (RFC 8489 §14.8) with reason, which may
// be empty.
func (b *Builder) AddErrorCode(code int, reason string) {
	b.header(stun.AttrErrorCode, 4+len(reason))
	b.buf = append(b.buf, 0, 0, byte(code/100), byte(code%100))
	b.buf = append(b.buf, reason...)
	b.pad()
}

// AddAddressErrorCode appends ADDRESS-ERROR-CODE (RFC 8656 §18.15) for
// family.
func (b *Builder) AddAddressErrorCode(family byte, code int, reason string) {
	b.header(AttrAddressErrorCode, 4+len(reason))
	b.buf = append(b.buf, family, 0, byte(code/100), byte(code%100))
	b.buf = append(b.buf, reason...)
	b.pad()
}

// AddUnknown appends UNKNOWN-ATTRIBUTES listing types.
func (b *Builder) AddUnknown(types []uint16) {
	b.header(stun.AttrUnknownAttributes, 2*len(types))
	for _, t := range types {
		b.buf = binary.BigEndian.AppendUint16(b.buf, t)
	}
	b.pad()
}

// setLength writes the length field for the message as it stands plus
// extra bytes still to come.
func (b *Builder) setLength(extra int) {
	binary.BigEndian.PutUint16(b.buf[b.start+2:], uint16(len(b.buf)-b.start-HeaderSize+extra))
}

// Integrity appends MESSAGE-INTEGRITY signed with key.
func (b *Builder) Integrity(mac *MAC, key []byte) {
	b.buf = mac.appendIntegrity(b.buf, b.start, key)
	b.setLength(0)
}

// Fingerprint appends FINGERPRINT; it must come last.
func (b *Builder) Fingerprint() {
	b.setLength(AttrHeaderSize + fingerprintSize)
	crc := stun.FingerprintValue(b.buf[b.start:])
	b.header(stun.AttrFingerprint, fingerprintSize)
	b.buf = binary.BigEndian.AppendUint32(b.buf, crc)
}

// Finish sets the length field and returns the whole buffer (dst with the
// message appended).
func (b *Builder) Finish() []byte {
	b.setLength(0)
	return b.buf
}

// Message returns the message built so far (after Finish).
func (b *Builder) Message() []byte { return b.buf[b.start:] }

// PutXORAddress writes an XOR-*-ADDRESS attribute of type t for ap into b
// (8 or 20 value bytes after the 4-byte header) for a message with
// transaction ID tid, and returns its size.
func PutXORAddress(b []byte, t stun.AttrType, ap netip.AddrPort, tid *[12]byte) int {
	return putAddress(b, t, ap, tid, true)
}

// putAddress writes an address attribute, XORed when xor is set.
func putAddress(b []byte, t stun.AttrType, ap netip.AddrPort, tid *[12]byte, xor bool) int {
	ip := ap.Addr().Unmap()
	n := 4
	fam := byte(FamilyIPv4)
	if ip.Is6() {
		n, fam = 16, FamilyIPv6
	}
	binary.BigEndian.PutUint16(b, uint16(t))
	binary.BigEndian.PutUint16(b[2:], uint16(4+n))
	b[4], b[5] = 0, fam
	var key [16]byte
	port := ap.Port()
	if xor {
		port ^= MagicCookie >> 16
		binary.BigEndian.PutUint32(key[:4], MagicCookie)
		copy(key[4:], tid[:])
	}
	binary.BigEndian.PutUint16(b[6:], port)
	if ip.Is4() {
		a := ip.As4()
		for i := range 4 {
			b[8+i] = a[i] ^ key[i]
		}
	} else {
		a := ip.As16()
		for i := range 16 {
			b[8+i] = a[i] ^ key[i]
		}
	}
	return AttrHeaderSize + 4 + n
}
