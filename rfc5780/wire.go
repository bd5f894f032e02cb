package rfc5780

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/pion/stun/v3"
)

// Wire constants (RFC 8489, RFC 5780).
const (
	headerSize     = 20
	attrHeaderSize = 4
	magicCookie    = 0x2112A442
	fingerprintXOR = 0x5354554e

	typeBindingRequest = 0x0001
	typeBindingSuccess = 0x0101
	typeBindingError   = 0x0111

	attrMappedAddress     = 0x0001
	attrChangeRequest     = 0x0003
	attrErrorCode         = 0x0009
	attrUnknownAttributes = 0x000A
	attrXORMappedAddress  = 0x0020
	attrResponsePort      = 0x0027
	attrSoftware          = 0x8022
	attrFingerprint       = 0x8028
	attrResponseOrigin    = 0x802B
	attrOtherAddress      = 0x802C

	// CHANGE-REQUEST flags (RFC 5780 §7.2): A is change IP, B change port.
	flagChangeIP   = 0x04
	flagChangePort = 0x02

	familyIPv4 = 0x01
	familyIPv6 = 0x02

	// maxSoftware is the longest SOFTWARE value RFC 8489 allows.
	maxSoftware = 763
	// maxUnknown bounds the UNKNOWN-ATTRIBUTES list of one answer.
	maxUnknown = 4
)

// Why parseRequest refused a datagram.
var (
	errNotBinding  = errors.New("rfc5780: not a STUN Binding request")
	errMalformed   = errors.New("rfc5780: malformed STUN attributes")
	errFingerprint = errors.New("rfc5780: FINGERPRINT mismatch")
)

// request is what ferry needs from a Binding request.
type request struct {
	tid       [12]byte
	change    uint8 // flagChangeIP|flagChangePort as sent
	hasChange bool  // a CHANGE-REQUEST attribute was present
	badChange bool  // ... but its value was not 4 bytes
	unknown   [maxUnknown]uint16
	nUnknown  int // comprehension-required attributes ferry refuses
}

// isBindingRequest is the cheap test every datagram goes through: a STUN
// header with the Binding request type and the magic cookie.
func isBindingRequest(b []byte) bool {
	return len(b) >= headerSize && b[0] == 0 && b[1] == typeBindingRequest &&
		binary.BigEndian.Uint32(b[4:8]) == magicCookie
}

func pad4(n int) int { return (n + 3) &^ 3 }

// parseRequest parses a Binding request from untrusted bytes: the header
// must be exact (length a multiple of 4 covering the rest of the datagram),
// every attribute must fit, and a FINGERPRINT, if present, must be last and
// correct. It does not allocate.
func parseRequest(b []byte) (request, error) {
	var r request
	if !isBindingRequest(b) {
		return r, errNotBinding
	}
	l := int(binary.BigEndian.Uint16(b[2:4]))
	if l%4 != 0 || headerSize+l != len(b) {
		return r, errMalformed
	}
	copy(r.tid[:], b[8:20])
	for off := headerSize; off < len(b); {
		if len(b)-off < attrHeaderSize {
			return r, errMalformed
		}
		at := binary.BigEndian.Uint16(b[off:])
		al := int(binary.BigEndian.Uint16(b[off+2:]))
		end := off + attrHeaderSize + pad4(al)
		if end > len(b) {
			return r, errMalformed
		}
		v := b[off+attrHeaderSize : off+attrHeaderSize+al]
		switch at {
		case attrChangeRequest:
			if r.hasChange {
				break
			}
			r.hasChange = true
			if al != 4 {
				r.badChange = true
				break
			}
			r.change = v[3] & (flagChangeIP | flagChangePort)
		case attrResponsePort:
			r.addUnknown(at)
		case attrFingerprint:
			if end != len(b) || al != 4 {
				return r, errMalformed
			}
			if binary.BigEndian.Uint32(v) != stun.FingerprintValue(b[:off]) {
				return r, errFingerprint
			}
		}
		off = end
	}
	return r, nil
}

func (r *request) addUnknown(t uint16) {
	for _, u := range r.unknown[:r.nUnknown] {
		if u == t {
			return
		}
	}
	if r.nUnknown < maxUnknown {
		r.unknown[r.nUnknown] = t
		r.nUnknown++
	}
}

// appendHeader appends a STUN header with a zero length (fixed by finish).
func appendHeader(dst []byte, typ uint16, tid *[12]byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, typ)
	dst = append(dst, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, magicCookie)
	return append(dst, tid[:]...)
}

// appendAddress appends a MAPPED-ADDRESS-style attribute (RFC 8489 §14.1),
// XORed as XOR-MAPPED-ADDRESS (§14.2) when xor is set.
func appendAddress(dst []byte, t uint16, ap netip.AddrPort, xor bool, tid *[12]byte) []byte {
	ip := ap.Addr().Unmap()
	port := ap.Port()
	fam, n := byte(familyIPv4), 4
	if ip.Is6() {
		fam, n = familyIPv6, 16
	}
	dst = binary.BigEndian.AppendUint16(dst, t)
	dst = binary.BigEndian.AppendUint16(dst, uint16(4+n))
	if xor {
		port ^= magicCookie >> 16
	}
	dst = append(dst, 0, fam)
	dst = binary.BigEndian.AppendUint16(dst, port)
	start := len(dst)
	if ip.Is4() {
		a := ip.As4()
		dst = append(dst, a[:]...)
	} else {
		a := ip.As16()
		dst = append(dst, a[:]...)
	}
	if xor {
		var key [16]byte
		binary.BigEndian.PutUint32(key[:4], magicCookie)
		copy(key[4:], tid[:])
		for i := range n {
			dst[start+i] ^= key[i]
		}
	}
	return dst
}

// encodeSoftware returns the SOFTWARE attribute for value, padded; nil for
// an empty value. Values are cut to maxSoftware bytes at a UTF-8 boundary.
func encodeSoftware(value string) []byte {
	if value == "" {
		return nil
	}
	if len(value) > maxSoftware {
		n := maxSoftware
		for n > 0 && value[n]&0xC0 == 0x80 {
			n--
		}
		value = value[:n]
	}
	b := binary.BigEndian.AppendUint16(nil, attrSoftware)
	b = binary.BigEndian.AppendUint16(b, uint16(len(value)))
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// finish sets the length of the message starting at dst[start] and appends
// FINGERPRINT.
func finish(dst []byte, start int) []byte {
	msg := dst[start:]
	binary.BigEndian.PutUint16(msg[2:4], uint16(len(msg)+8-headerSize))
	crc := stun.FingerprintValue(msg)
	dst = append(dst, 0x80, 0x28, 0x00, 0x04)
	return binary.BigEndian.AppendUint32(dst, crc)
}

// success describes a Binding success response.
type success struct {
	mapped, origin, other netip.AddrPort // origin/other omitted when invalid
}

// appendSuccess appends a Binding success response to dst.
func appendSuccess(dst []byte, tid *[12]byte, s success, software []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, typeBindingSuccess, tid)
	dst = appendAddress(dst, attrXORMappedAddress, s.mapped, true, tid)
	dst = appendAddress(dst, attrMappedAddress, s.mapped, false, tid)
	if s.origin.IsValid() && !s.origin.Addr().IsUnspecified() {
		dst = appendAddress(dst, attrResponseOrigin, s.origin, false, tid)
	}
	if s.other.IsValid() {
		dst = appendAddress(dst, attrOtherAddress, s.other, false, tid)
	}
	dst = append(dst, software...)
	return finish(dst, start)
}

// appendError appends a Binding error response with ERROR-CODE code and,
// when unknown is not empty, UNKNOWN-ATTRIBUTES.
func appendError(dst []byte, tid *[12]byte, code int, reason string, unknown []uint16, software []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, typeBindingError, tid)
	dst = binary.BigEndian.AppendUint16(dst, attrErrorCode)
	dst = binary.BigEndian.AppendUint16(dst, uint16(4+len(reason)))
	dst = append(dst, 0, 0, byte(code/100), byte(code%100))
	dst = append(dst, reason...)
	for (len(dst)-start)%4 != 0 {
		dst = append(dst, 0)
	}
	if len(unknown) > 0 {
		dst = binary.BigEndian.AppendUint16(dst, attrUnknownAttributes)
		dst = binary.BigEndian.AppendUint16(dst, uint16(2*len(unknown)))
		for _, u := range unknown {
			dst = binary.BigEndian.AppendUint16(dst, u)
		}
		for (len(dst)-start)%4 != 0 {
			dst = append(dst, 0)
		}
	}
	dst = append(dst, software...)
	return finish(dst, start)
}
