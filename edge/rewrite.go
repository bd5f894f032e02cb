package edge

import (
	"encoding/binary"

	"github.com/pion/stun/v3"
)

// forbiddenAttr is ERROR-CODE 403 "Forbidden" (length 13, padded to 16).
const forbiddenAttr = "\x00\x09\x00\x0d\x00\x00\x04\x03Forbidden\x00\x00\x00"

const fingerprintAttrSize = attrHeaderSize + 4

// plan is what a response rewrite changes; offsets index the original.
type plan struct {
	fix403      bool // ChannelBind 401 without NONCE becomes 403
	addSoftware bool
	errOff      int // ERROR-CODE attribute, start and end including padding
	errEnd      int
	fpOff       int // FINGERPRINT attribute start, or -1 if none
}

// planRewrite decides, without allocating, whether the outgoing b must be
// rewritten. Only well-formed STUN success and error responses without
// MESSAGE-INTEGRITY (or -SHA256) are candidates; anything else, ChannelData
// and indications included, is sent as is (ok false).
func planRewrite(b []byte, software []byte) (p plan, ok bool) {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 {
		return plan{}, false
	}
	typ := be16(b[0:2])
	cls := stunClass(typ)
	if cls != classSuccess && cls != classError {
		return plan{}, false
	}
	if software == nil && typ != typeChanBindErr {
		return plan{}, false
	}
	if binary.BigEndian.Uint32(b[4:8]) != magicCookie {
		return plan{}, false
	}
	if l := be16(b[2:4]); l%4 != 0 || stunHeaderSize+l != len(b) {
		return plan{}, false
	}
	p = plan{errOff: -1, fpOff: -1}
	var hasNonce, hasSoftware bool
	code := 0
	for off := stunHeaderSize; off < len(b); {
		if p.fpOff >= 0 {
			return plan{}, false // FINGERPRINT must be last
		}
		at, al := be16(b[off:]), be16(b[off+2:])
		end := off + attrHeaderSize + pad4(al)
		if end > len(b) {
			return plan{}, false
		}
		switch at {
		case attrMessageIntegrity, attrMessageIntegritySHA256:
			return plan{}, false // integrity-protected: never touch
		case attrNonce:
			hasNonce = true
		case attrSoftware:
			hasSoftware = true
		case attrErrorCode:
			if p.errOff < 0 && al >= 4 {
				p.errOff, p.errEnd = off, end
				code = int(b[off+6]&0x7)*100 + int(b[off+7])
			}
		case attrFingerprint:
			if al != 4 {
				return plan{}, false
			}
			p.fpOff = off
		}
		off = end
	}
	// A genuine auth challenge carries NONCE; pion's permission refusal
	// does not (internal/server/turn.go handleChannelBindRequest).
	p.fix403 = typ == typeChanBindErr && code == 401 && !hasNonce
	p.addSoftware = software != nil && !hasSoftware && (typ == typeBindingOK || cls == classError)
	if !p.fix403 && !p.addSoftware {
		return plan{}, false
	}
	// The result must fit the 16-bit length field.
	if n := rewrittenLen(b, p, software); n-stunHeaderSize > 0xFFFF {
		if !p.fix403 {
			return plan{}, false
		}
		p.addSoftware = false
	}
	return p, true
}

func rewrittenLen(b []byte, p plan, software []byte) int {
	n := len(b)
	if p.fix403 {
		n += len(forbiddenAttr) - (p.errEnd - p.errOff)
	}
	if p.addSoftware {
		n += len(software)
	}
	return n
}

// appendRewritten appends b rewritten according to p to dst: ERROR-CODE
// replaced, SOFTWARE inserted before FINGERPRINT, length fixed, FINGERPRINT
// recomputed.
func appendRewritten(dst, b []byte, p plan, software []byte) []byte {
	start := len(dst)
	end := len(b)
	if p.fpOff >= 0 {
		end = p.fpOff
	}
	if p.fix403 {
		dst = append(dst, b[:p.errOff]...)
		dst = append(dst, forbiddenAttr...)
		dst = append(dst, b[p.errEnd:end]...)
	} else {
		dst = append(dst, b[:end]...)
	}
	if p.addSoftware {
		dst = append(dst, software...)
	}
	msg := dst[start:]
	if p.fpOff < 0 {
		binary.BigEndian.PutUint16(msg[2:4], uint16(len(msg)-stunHeaderSize))
		return dst
	}
	// The length field covers FINGERPRINT when its CRC is computed.
	binary.BigEndian.PutUint16(msg[2:4], uint16(len(msg)+fingerprintAttrSize-stunHeaderSize))
	crc := stun.FingerprintValue(msg)
	return binary.BigEndian.AppendUint32(append(dst, 0x80, 0x28, 0x00, 0x04), crc)
}
