package edge

import (
	"encoding/binary"
	"errors"
)

// Wire constants (RFC 8489, RFC 8656).
const (
	stunHeaderSize  = 20
	attrHeaderSize  = 4
	chanHeaderSize  = 4
	magicCookie     = 0x2112A442
	typeBindingReq  = 0x0001
	typeBindingOK   = 0x0101
	typeBindingErr  = 0x0111
	typeAllocateReq = 0x0003
	typeChanBindErr = 0x0119
	typeConnectReq  = 0x000A
	typeConnectErr  = 0x011A
	typeConnBindReq = 0x000B
	typeConnBindOK  = 0x010B
	typeConnBindErr = 0x011B

	attrMessageIntegrity       = 0x0008
	attrErrorCode              = 0x0009
	attrNonce                  = 0x0015
	attrMessageIntegritySHA256 = 0x001C
	attrSoftware               = 0x8022
	attrFingerprint            = 0x8028

	classRequest    = 0
	classIndication = 1
	classSuccess    = 2
	classError      = 3
)

// Errors a framed stream connection's Read returns when it gives up on the
// connection.
var (
	// ErrInvalidFrame means the stream is neither STUN nor ChannelData.
	ErrInvalidFrame = errors.New("edge: stream is not STUN or ChannelData")
	// ErrFrameTooLarge means a frame of MTU bytes or more was announced.
	ErrFrameTooLarge = errors.New("edge: frame exceeds MTU")
	// ErrIdleTimeout means the connection sent no complete frame in time.
	ErrIdleTimeout = errors.New("edge: no complete frame before idle timeout")
)

// kind is what a datagram or frame is.
type kind uint8

const (
	kindInvalid kind = iota
	kindChannelData
	kindBindingRequest
	kindRequest
	kindIndication
	kindResponse
)

// info describes a classified datagram or frame.
type info struct {
	kind      kind
	integrity bool // a STUN request carrying MESSAGE-INTEGRITY
	dataLen   int  // ChannelData application data length

	// STUN requests only.
	typ      int // message type
	miOff    int // first MESSAGE-INTEGRITY attribute, 0 if none
	nonceOff int // first NONCE value, 0 if none
	nonceLen int
}

func pad4(n int) int { return (n + 3) &^ 3 }

func be16(b []byte) int { return int(binary.BigEndian.Uint16(b)) }

// stunClass extracts the class bits C1 (bit 8) and C0 (bit 4) of a STUN
// message type.
func stunClass(t int) int { return (t>>7)&2 | (t>>4)&1 }

// isChannelNumber reports whether the first two bits are 01, that is the
// channel number is in 0x4000-0x7FFF: exactly what pion's
// ChannelNumber.Valid accepts (RFC 8656 narrowed the range to 0x4000-0x4FFF;
// pion did not, and clients use what pion accepts).
func isChannelNumber(b0 byte) bool { return b0>>6 == 1 }

// classifyDatagram classifies a whole datagram (UDP, or one DTLS record
// holding one message). It does not allocate.
//
// ChannelData: channel number per isChannelNumber, and the datagram holds
// the announced data plus at most the padding (padding is optional over
// UDP). STUN: first two bits 00, magic cookie, length a multiple of 4 and
// equal to the datagram length minus the header, attributes well formed.
func classifyDatagram(b []byte) info {
	if len(b) < chanHeaderSize {
		return info{}
	}
	if isChannelNumber(b[0]) {
		l := be16(b[2:4])
		if n := len(b) - chanHeaderSize; n < l || n > pad4(l) {
			return info{}
		}
		return info{kind: kindChannelData, dataLen: l}
	}
	return classifySTUN(b)
}

// classifySTUN classifies b, which must be exactly one STUN message.
func classifySTUN(b []byte) info {
	in, ok := checkSTUN(b)
	if !ok {
		return info{}
	}
	switch stunClass(in.typ) {
	case classRequest:
		in.kind = kindRequest
		if in.typ == typeBindingReq {
			in.kind = kindBindingRequest
		}
		in.integrity = in.miOff > 0
		return in
	case classIndication:
		return info{kind: kindIndication}
	default:
		return info{kind: kindResponse}
	}
}

// checkSTUN validates that b is exactly one STUN message with well-formed
// attributes, and reports its type and where its first MESSAGE-INTEGRITY
// and NONCE are.
func checkSTUN(b []byte) (in info, ok bool) {
	if len(b) < stunHeaderSize || b[0]&0xC0 != 0 ||
		binary.BigEndian.Uint32(b[4:8]) != magicCookie {
		return info{}, false
	}
	l := be16(b[2:4])
	if l%4 != 0 || stunHeaderSize+l != len(b) {
		return info{}, false
	}
	for off := stunHeaderSize; off < len(b); {
		// off and len(b) are multiples of 4 here, so a header fits.
		at, al := be16(b[off:]), be16(b[off+2:])
		end := off + attrHeaderSize + pad4(al)
		if end > len(b) {
			return info{}, false
		}
		switch {
		case at == attrMessageIntegrity && in.miOff == 0:
			in.miOff = off
		case at == attrNonce && in.nonceOff == 0:
			in.nonceOff, in.nonceLen = off+attrHeaderSize, al
		}
		off = end
	}
	in.typ = be16(b[0:2])
	return in, true
}

// streamFrameSize returns the size of the frame at the start of b, a
// reliable stream, or 0 if more bytes are needed to know. ChannelData over
// streams is padded to 4 bytes (RFC 8656 section 12.5), as pion's
// consumeSingleTURNFrame assumes. A frame of mtu bytes or more is
// ErrFrameTooLarge; bytes that start neither a STUN message nor ChannelData
// are ErrInvalidFrame.
func streamFrameSize(b []byte, mtu int) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var size int
	switch b[0] >> 6 {
	case 1:
		if len(b) < chanHeaderSize {
			return 0, nil
		}
		size = chanHeaderSize + pad4(be16(b[2:4]))
	case 0:
		if len(b) < 8 {
			return 0, nil
		}
		if binary.BigEndian.Uint32(b[4:8]) != magicCookie {
			return 0, ErrInvalidFrame
		}
		l := be16(b[2:4])
		if l%4 != 0 {
			return 0, ErrInvalidFrame
		}
		size = stunHeaderSize + l
	default:
		return 0, ErrInvalidFrame
	}
	if size >= mtu {
		return 0, ErrFrameTooLarge
	}
	if len(b) < size {
		return 0, nil
	}
	return size, nil
}
