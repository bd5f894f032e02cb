package stunwire

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/pion/stun/v3"
)

// Sizes and magic values of the wire format.
const (
	HeaderSize      = 20
	AttrHeaderSize  = 4
	MagicCookie     = 0x2112A442
	integritySize   = 20
	fingerprintSize = 4
	fingerprintXOR  = 0x5354554e

	// ChannelHeaderSize is the ChannelData header: channel number and
	// length.
	ChannelHeaderSize = 4
	// MinChannel and MaxChannel bound the channel numbers a client may
	// bind: RFC 5766's 0x4000-0x7FFE. RFC 8656 §12 narrowed new bindings to
	// 0x4000-0x4FFF, but coturn's clients still pick numbers up to 0x7FFE,
	// and a server loses nothing by accepting them.
	MinChannel = 0x4000
	MaxChannel = 0x7FFE

	// Address families in XOR-*-ADDRESS and REQUESTED-ADDRESS-FAMILY.
	FamilyIPv4 = 0x01
	FamilyIPv6 = 0x02

	// Transport protocol numbers in REQUESTED-TRANSPORT.
	ProtoUDP = 17
	ProtoTCP = 6

	// CHANGE-REQUEST flags (RFC 5780 §7.2).
	ChangeIP   = 0x04
	ChangePort = 0x02

	// MaxUnknown bounds the UNKNOWN-ATTRIBUTES list kept per message.
	MaxUnknown = 4
)

// Attributes that pion/stun does not name.
const (
	AttrAdditionalAddressFamily stun.AttrType = 0x8000 // ADDITIONAL-ADDRESS-FAMILY (RFC 8656)
	AttrAddressErrorCode        stun.AttrType = 0x8001 // ADDRESS-ERROR-CODE (RFC 8656)
	AttrICMP                    stun.AttrType = 0x8004 // ICMP (RFC 8656)
)

// Errors from Parse. Callers count them; none carries data from the
// packet.
var (
	ErrShort       = errors.New("stunwire: shorter than a STUN header")
	ErrNotSTUN     = errors.New("stunwire: not a STUN message (first bits or magic cookie)")
	ErrLength      = errors.New("stunwire: length field does not match the datagram")
	ErrAttribute   = errors.New("stunwire: attribute runs past the message")
	ErrFingerprint = errors.New("stunwire: FINGERPRINT missing its place or value")
	ErrIntegrity   = errors.New("stunwire: MESSAGE-INTEGRITY is not 20 bytes")
)

// Kind is what the first bytes of a client packet say it is.
type Kind uint8

// Packet kinds.
const (
	KindOther       Kind = iota // neither: dropped
	KindSTUN                    // a STUN message (top two bits zero)
	KindChannelData             // ChannelData (first byte 0x40-0x7F)
)

// Classify looks at the first byte only (RFC 7983 demultiplexing, narrowed
// to what a TURN server accepts): 0-3 STUN, 0x40-0x7F ChannelData.
func Classify(b []byte) Kind {
	if len(b) == 0 {
		return KindOther
	}
	switch c := b[0]; {
	case c < 4:
		return KindSTUN
	case c >= 0x40 && c <= 0x7F:
		return KindChannelData
	}
	return KindOther
}

// ChannelData splits a ChannelData message: the channel number and the
// application data. ok is false when the header is short, the number is
// outside MinChannel-MaxChannel or the length field exceeds the bytes (padding
// after the data is allowed, as over TCP).
func ChannelData(b []byte) (channel uint16, data []byte, ok bool) {
	if len(b) < ChannelHeaderSize {
		return 0, nil, false
	}
	channel = binary.BigEndian.Uint16(b)
	n := int(binary.BigEndian.Uint16(b[2:]))
	if channel < MinChannel || channel > MaxChannel || ChannelHeaderSize+n > len(b) {
		return 0, nil, false
	}
	return channel, b[ChannelHeaderSize : ChannelHeaderSize+n], true
}

// PutChannelHeader writes a ChannelData header for n bytes of data into
// b[0:4].
func PutChannelHeader(b []byte, channel uint16, n int) {
	binary.BigEndian.PutUint16(b, channel)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
}

// Pad4 rounds n up to a multiple of 4.
func Pad4(n int) int { return (n + 3) &^ 3 }

// StreamFrameLen returns the length of the frame at the start of a TCP or
// TLS byte stream: a STUN message (20 + length) or a ChannelData message
// padded to 4 bytes (RFC 8656 §12.5). need is true when b is too short to
// tell; ok is false when the bytes are neither.
func StreamFrameLen(b []byte) (n int, need, ok bool) {
	if len(b) < ChannelHeaderSize {
		return 0, true, true
	}
	switch Classify(b) {
	case KindSTUN:
		return HeaderSize + int(binary.BigEndian.Uint16(b[2:])), false, true
	case KindChannelData:
		return ChannelHeaderSize + Pad4(int(binary.BigEndian.Uint16(b[2:]))), false, true
	}
	return 0, false, false
}

// Message is a parsed STUN message: pion's decoded view of the bytes plus
// where its integrity attributes sit. Reuse one per reading loop; Parse
// allocates nothing once its attribute slice has grown.
type Message struct {
	stun.Message
	// Protected is the number of leading Attributes covered by
	// MESSAGE-INTEGRITY (all of them when there is none): Get looks no
	// further.
	Protected int
	// IntegrityOffset is the byte offset of the MESSAGE-INTEGRITY
	// attribute header, 0 when there is none.
	IntegrityOffset int
	// HasFingerprint says the message ended with a FINGERPRINT that
	// verified.
	HasFingerprint bool
	// Unknown lists comprehension-required attribute types (below 0x8000)
	// that are not in the known set, up to MaxUnknown.
	Unknown  [MaxUnknown]uint16
	NUnknown int
}

// known reports whether ferry understands a comprehension-required
// attribute type.
func known(t stun.AttrType) bool {
	switch t {
	case stun.AttrMappedAddress, stun.AttrChangeRequest, stun.AttrUsername, stun.AttrMessageIntegrity,
		stun.AttrErrorCode, stun.AttrUnknownAttributes, stun.AttrChannelNumber, stun.AttrLifetime,
		stun.AttrXORPeerAddress, stun.AttrData, stun.AttrRealm, stun.AttrNonce, stun.AttrXORRelayedAddress,
		stun.AttrRequestedAddressFamily, stun.AttrEvenPort, stun.AttrRequestedTransport,
		stun.AttrDontFragment, stun.AttrXORMappedAddress, stun.AttrReservationToken, stun.AttrPriority,
		stun.AttrUseCandidate, stun.AttrPadding, stun.AttrConnectionID:
		return true
	}
	return false
}

// Parse decodes b, which m keeps referring to (nothing is copied). Besides
// pion's checks it requires the length field to cover the datagram exactly
// (for datagram transports; stream callers pass one frame), a FINGERPRINT
// to be last and correct, and MESSAGE-INTEGRITY to be 20 bytes.
// Attributes after MESSAGE-INTEGRITY other than FINGERPRINT are left out
// of Protected.
func Parse(b []byte, m *Message) error {
	m.Protected, m.IntegrityOffset, m.HasFingerprint, m.NUnknown = 0, 0, false, 0
	if len(b) < HeaderSize {
		return ErrShort
	}
	if b[0]&0xC0 != 0 || binary.BigEndian.Uint32(b[4:8]) != MagicCookie {
		return ErrNotSTUN
	}
	l := int(binary.BigEndian.Uint16(b[2:4]))
	if l%4 != 0 || HeaderSize+l != len(b) {
		return ErrLength
	}
	m.Raw = b
	if err := m.Decode(); err != nil {
		return ErrAttribute
	}
	off := HeaderSize
	protected := -1
	for i, a := range m.Attributes {
		end := off + AttrHeaderSize + Pad4(int(a.Length))
		switch a.Type {
		case stun.AttrMessageIntegrity:
			if protected < 0 {
				if a.Length != integritySize {
					return ErrIntegrity
				}
				m.IntegrityOffset = off
				protected = i
			}
		case stun.AttrFingerprint:
			if end != len(b) || a.Length != fingerprintSize {
				return ErrFingerprint
			}
			if binary.BigEndian.Uint32(a.Value) != stun.FingerprintValue(b[:off]) {
				return ErrFingerprint
			}
			m.HasFingerprint = true
		default:
			if protected < 0 && a.Type < 0x8000 && !known(a.Type) {
				m.addUnknown(uint16(a.Type))
			}
		}
		off = end
	}
	if protected < 0 {
		protected = len(m.Attributes)
		if m.HasFingerprint {
			protected--
		}
	}
	m.Protected = protected
	return nil
}

func (m *Message) addUnknown(t uint16) {
	for _, u := range m.Unknown[:m.NUnknown] {
		if u == t {
			return
		}
	}
	if m.NUnknown < MaxUnknown {
		m.Unknown[m.NUnknown] = t
		m.NUnknown++
	}
}

// Get returns the value of the first attribute of type t that
// MESSAGE-INTEGRITY covers.
func (m *Message) Get(t stun.AttrType) ([]byte, bool) {
	for _, a := range m.Attributes[:m.Protected] {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

// GetUnprotected returns the value of the first attribute of type t,
// including those after MESSAGE-INTEGRITY, which it does not protect. Only
// for hints a client may send unprotected: pion's TURN client places
// REQUESTED-ADDRESS-FAMILY and EVEN-PORT after MESSAGE-INTEGRITY.
func (m *Message) GetUnprotected(t stun.AttrType) ([]byte, bool) {
	for _, a := range m.Attributes {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

// Has reports whether a covered attribute of type t is present.
func (m *Message) Has(t stun.AttrType) bool {
	_, ok := m.Get(t)
	return ok
}

// HasIntegrity reports whether the message carries MESSAGE-INTEGRITY.
func (m *Message) HasIntegrity() bool { return m.IntegrityOffset > 0 }

// Uint32 returns a 4-byte attribute's value.
func (m *Message) Uint32(t stun.AttrType) (uint32, bool) {
	v, ok := m.Get(t)
	if !ok || len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// XORAddress decodes an XOR-*-ADDRESS value (RFC 8489 §14.2) of a message
// with transaction ID tid.
func XORAddress(v []byte, tid *[12]byte) (netip.AddrPort, bool) {
	if len(v) < 4 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(v[2:]) ^ MagicCookie>>16
	switch v[1] {
	case FamilyIPv4:
		if len(v) != 8 {
			return netip.AddrPort{}, false
		}
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(v[4:])^MagicCookie)
		return netip.AddrPortFrom(netip.AddrFrom4(a), port), true
	case FamilyIPv6:
		if len(v) != 20 {
			return netip.AddrPort{}, false
		}
		var a [16]byte
		binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(v[4:])^MagicCookie)
		for i := 4; i < 16; i++ {
			a[i] = v[4+i] ^ tid[i-4]
		}
		return netip.AddrPortFrom(netip.AddrFrom16(a), port), true
	}
	return netip.AddrPort{}, false
}

// EachXORAddress calls fn for every covered attribute of type t, decoded;
// ok is false for a value that does not decode. It stops when fn returns
// false.
func (m *Message) EachXORAddress(t stun.AttrType, fn func(ap netip.AddrPort, ok bool) bool) {
	for _, a := range m.Attributes[:m.Protected] {
		if a.Type != t {
			continue
		}
		ap, ok := XORAddress(a.Value, &m.TransactionID)
		if !fn(ap, ok) {
			return
		}
	}
}

// GetXORAddress decodes the first covered attribute of type t.
func (m *Message) GetXORAddress(t stun.AttrType) (ap netip.AddrPort, present, ok bool) {
	v, present := m.Get(t)
	if !present {
		return netip.AddrPort{}, false, false
	}
	ap, ok = XORAddress(v, &m.TransactionID)
	return ap, true, ok
}
