package edge

import (
	"encoding/binary"
	"net/netip"

	"github.com/pion/stun/v3"
)

// forbiddenAttr is ERROR-CODE 403 "Forbidden" (length 13, padded to 16).
const forbiddenAttr = "\x00\x09\x00\x0d\x00\x00\x04\x03Forbidden\x00\x00\x00"

const (
	fingerprintAttrSize = attrHeaderSize + 4
	bareErrorAttrSize   = attrHeaderSize + 4 // ERROR-CODE without a reason phrase
	codeStaleNonce      = 438
	// bindingAllowance is how many times its request's size a Binding
	// response may be before it is trimmed (SOFTWARE, reason phrase).
	bindingAllowance = 4
)

// outCtx is what a writer knows about a response's destination.
type outCtx struct {
	software []byte     // encoded SOFTWARE attribute to add, nil for none
	guard    *Guard     // binds NONCE to dst when it binds nonces
	dst      netip.Addr // the client's address
	stale    *staleRing // requests whose stale nonce was stripped
	limit    int        // size of the UDP request answered (amplification cap); 0: none
}

// action is what to do with an outgoing message.
type action uint8

const (
	sendAsIs action = iota
	sendRewritten
	dropResponse
)

// plan is what a response rewrite changes; offsets index the original.
type plan struct {
	fix403      bool // ChannelBind 401 without NONCE becomes 403
	addSoftware bool
	errOff      int // ERROR-CODE attribute, start and end including padding; -1 if none
	errEnd      int
	code        int // its code
	bareCode    int // if non-zero, ERROR-CODE becomes this code without a reason phrase
	swOff       int // a SOFTWARE attribute already present, -1 if none
	swEnd       int
	dropSW      bool // leave that SOFTWARE out
	nonceOff    int  // NONCE value and length, nonceOff -1 if none
	nonceLen    int
	bindNonce   bool // write the client's case pattern into NONCE
	fpOff       int  // FINGERPRINT attribute start, or -1 if none
	trimmed     bool // trimmed for the amplification cap
}

// isResponse reports whether b starts like a STUN success or error
// response: the only messages planRewrite may change.
func isResponse(b []byte) bool {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 {
		return false
	}
	cls := stunClass(be16(b[0:2]))
	return cls == classSuccess || cls == classError
}

// planRewrite decides, without allocating, what to do with the outgoing
// b. Only well-formed STUN success and error responses without
// MESSAGE-INTEGRITY (or -SHA256) are ever changed or dropped; ChannelData,
// indications and integrity-protected responses are sent as they are.
//
// The changes: a ChannelBind 401 without NONCE (pion's peer refusal)
// becomes 403; a 401 answering a request whose stale nonce the edge
// stripped becomes 438; NONCE gets the client's case pattern; SOFTWARE is
// added to Binding successes and error responses. Then, when o.limit is
// set (UDP), the amplification cap: an error response may not be larger
// than the request it answers, a Binding response (success or error) not
// more than bindingAllowance times. Over the cap the response is trimmed
// (no SOFTWARE, no reason phrase) and, if still too large, dropped, except
// the 401 and 438 challenges and Binding successes, which clients cannot
// do without and are sent trimmed.
func planRewrite(b []byte, o outCtx) (p plan, act action) {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 {
		return plan{}, sendAsIs
	}
	typ := be16(b[0:2])
	cls := stunClass(typ)
	if cls != classSuccess && cls != classError {
		return plan{}, sendAsIs
	}
	if cls == classSuccess && typ != typeBindingOK {
		return plan{}, sendAsIs // only Binding successes come without MESSAGE-INTEGRITY over UDP
	}
	if binary.BigEndian.Uint32(b[4:8]) != magicCookie {
		return plan{}, sendAsIs
	}
	if l := be16(b[2:4]); l%4 != 0 || stunHeaderSize+l != len(b) {
		return plan{}, sendAsIs
	}
	p = plan{errOff: -1, swOff: -1, nonceOff: -1, fpOff: -1}
	for off := stunHeaderSize; off < len(b); {
		if p.fpOff >= 0 {
			return plan{}, sendAsIs // FINGERPRINT must be last
		}
		at, al := be16(b[off:]), be16(b[off+2:])
		end := off + attrHeaderSize + pad4(al)
		if end > len(b) {
			return plan{}, sendAsIs
		}
		switch at {
		case attrMessageIntegrity, attrMessageIntegritySHA256:
			return plan{}, sendAsIs // integrity-protected: never touch
		case attrNonce:
			if p.nonceOff < 0 {
				p.nonceOff, p.nonceLen = off+attrHeaderSize, al
			}
		case attrSoftware:
			if p.swOff < 0 {
				p.swOff, p.swEnd = off, end
			}
		case attrErrorCode:
			if p.errOff >= 0 || al < 4 {
				// A second or truncated ERROR-CODE: not something pion
				// sends; leave the message alone.
				return plan{}, sendAsIs
			}
			class, number := int(b[off+6]&0x7), int(b[off+7])
			if class < 3 || class > 6 || number > 99 {
				// Not a code RFC 8489 §14.8 allows (300-699): leave the
				// message alone rather than rewrite nonsense.
				return plan{}, sendAsIs
			}
			p.errOff, p.errEnd = off, end
			p.code = class*100 + number
		case attrFingerprint:
			if al != 4 {
				return plan{}, sendAsIs
			}
			p.fpOff = off
		}
		off = end
	}
	hasNonce := p.nonceOff >= 0
	// A genuine auth challenge carries NONCE; pion's permission refusal
	// does not (internal/server/turn.go handleChannelBindRequest).
	p.fix403 = typ == typeChanBindErr && p.code == 401 && !hasNonce
	if cls == classError && p.code == 401 && hasNonce && o.stale != nil && o.stale.take(b[8:stunHeaderSize]) {
		p.bareCode = codeStaleNonce
	}
	p.bindNonce = cls == classError && hasNonce && p.nonceLen > 0 && o.guard != nil && o.guard.bind && o.dst.IsValid()
	p.addSoftware = o.software != nil && p.swOff < 0
	changed := p.fix403 || p.bareCode != 0 || p.bindNonce || p.addSoftware

	if o.limit > 0 {
		allowed := o.limit
		if typ == typeBindingOK || typ == typeBindingErr {
			allowed = bindingAllowance * o.limit
		}
		if p.size(b, o.software) > allowed {
			p.addSoftware = false
			p.dropSW = p.swOff >= 0
			p.trimmed = true
			if p.errOff >= 0 && p.bareCode == 0 {
				p.bareCode = p.finalCode()
			}
			changed = true
			if p.size(b, o.software) > allowed {
				switch c := p.finalCode(); {
				case typ == typeBindingOK, c == 401, c == codeStaleNonce:
				default:
					return plan{}, dropResponse
				}
			}
		}
	}
	if !changed {
		return plan{}, sendAsIs
	}
	if p.size(b, o.software)-stunHeaderSize > 0xFFFF {
		// Only adding SOFTWARE can grow a message; give that up.
		p.addSoftware = false
	}
	return p, sendRewritten
}

// finalCode is the error code the rewritten response carries.
func (p *plan) finalCode() int {
	switch {
	case p.bareCode != 0:
		return p.bareCode
	case p.fix403:
		return 403
	}
	return p.code
}

// size is the length of the rewritten message.
func (p *plan) size(b []byte, software []byte) int {
	n := len(b)
	if p.errOff >= 0 {
		switch {
		case p.bareCode != 0:
			n += bareErrorAttrSize - (p.errEnd - p.errOff)
		case p.fix403:
			n += len(forbiddenAttr) - (p.errEnd - p.errOff)
		}
	}
	if p.dropSW {
		n -= p.swEnd - p.swOff
	}
	if p.addSoftware {
		n += len(software)
	}
	return n
}

// appendRewritten appends b rewritten according to p to dst: ERROR-CODE
// replaced, SOFTWARE left out or inserted before FINGERPRINT, NONCE
// re-cased, length fixed, FINGERPRINT recomputed.
func appendRewritten(dst, b []byte, p plan, o outCtx) []byte {
	start := len(dst)
	dst = append(dst, b[:stunHeaderSize]...)
	for off := stunHeaderSize; off < len(b); {
		end := off + attrHeaderSize + pad4(be16(b[off+2:]))
		switch {
		case off == p.fpOff:
			end = len(b) // recomputed below; it is last
		case off == p.errOff && p.bareCode != 0:
			dst = append(dst, 0x00, 0x09, 0x00, 0x04, 0, 0, byte(p.bareCode/100), byte(p.bareCode%100))
		case off == p.errOff && p.fix403:
			dst = append(dst, forbiddenAttr...)
		case off == p.swOff && p.dropSW:
		case off+attrHeaderSize == p.nonceOff && p.bindNonce:
			n := len(dst) + attrHeaderSize
			dst = append(dst, b[off:end]...)
			o.guard.bindNonce(dst[n:n+p.nonceLen], o.dst)
		default:
			dst = append(dst, b[off:end]...)
		}
		off = end
	}
	if p.addSoftware {
		dst = append(dst, o.software...)
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
