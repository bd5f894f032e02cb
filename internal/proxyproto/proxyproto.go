package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"
)

// Signature opens every version 2 header.
var Signature = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

// MaxBlockLen is the longest address block (addresses and TLVs, the header's
// length field) accepted: a TCP over IPv6 block is 36 bytes and the
// longest address family's (AF_UNIX) 216; the rest leaves room for the TLVs
// load balancers add (AWS's VPC endpoint ID, Azure's link ID, HAProxy's
// TLS details). A longer header is refused rather than read.
const MaxBlockLen = 1024

// Command is a header's command.
type Command uint8

// The commands of version 2.
const (
	// Local: the proxy opened the connection itself (a health check); the
	// connection's real endpoints apply.
	Local Command = 0x0
	// Proxy: the connection is relayed for Header.Source.
	Proxy Command = 0x1
)

func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return fmt.Sprintf("Command(%d)", uint8(c))
}

// Address families and transports of the family byte that ferry accepts
// with the PROXY command; LOCAL takes any, UNSPEC (0x00) as a rule.
const (
	famUnspec = 0x00
	famTCP4   = 0x11
	famTCP6   = 0x21
)

// Header is a parsed version 2 header.
type Header struct {
	Command Command
	// Source is the client's address and Destination the address it
	// reached, for the PROXY command (TCP over IPv4 or IPv6); both are
	// invalid for LOCAL. IPv4-mapped IPv6 addresses are unmapped.
	Source, Destination netip.AddrPort
}

// Errors. Every error of a header that is not acceptable wraps ErrMalformed;
// one of a connection that ended before its first byte is ErrEmpty; one of a
// deadline that passed satisfies errors.Is(err, os.ErrDeadlineExceeded).
var (
	ErrMalformed = errors.New("malformed PROXY protocol header")
	ErrEmpty     = errors.New("connection closed before a PROXY protocol header")
)

// ErrV1 is the error for a version 1 (text) header; it wraps ErrMalformed.
var ErrV1 = fmt.Errorf("%w: version 1 (text); only version 2 is accepted: configure the load balancer to send v2 (HAProxy: send-proxy-v2)", ErrMalformed)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// Parse reads one version 2 header from r: exactly its bytes, nothing
// after them, and at most 16+MaxBlockLen bytes in all.
func Parse(r io.Reader) (Header, error) {
	var fixed [16]byte
	// The signature first: 12 bytes are within the shortest version 1
	// header ("PROXY UNKNOWN\r\n"), so a v1 sender is told at once rather
	// than after the deadline.
	if n, err := io.ReadFull(r, fixed[:12]); err != nil {
		return Header{}, readError(err, n)
	}
	if [12]byte(fixed[:12]) != Signature {
		if bytes.HasPrefix(fixed[:12], []byte("PROXY ")) {
			return Header{}, ErrV1
		}
		return Header{}, malformed("no PROXY protocol v2 signature (the connection did not come through a proxy that sends one)")
	}
	if n, err := io.ReadFull(r, fixed[12:]); err != nil {
		return Header{}, readError(err, 12+n)
	}
	verCmd, fam := fixed[12], fixed[13]
	if v := verCmd >> 4; v != 2 {
		return Header{}, malformed("version %d, want 2", v)
	}
	cmd := Command(verCmd & 0x0F)
	if cmd != Local && cmd != Proxy {
		return Header{}, malformed("unknown command %#x", uint8(cmd))
	}
	n := int(binary.BigEndian.Uint16(fixed[14:]))
	if n > MaxBlockLen {
		return Header{}, malformed("address block of %d bytes, more than the %d accepted", n, MaxBlockLen)
	}
	block := make([]byte, n)
	if k, err := io.ReadFull(r, block); err != nil {
		return Header{}, readError(err, 16+k)
	}
	return decode(cmd, fam, block)
}

// decode reads the address block of a header whose fixed part was read.
func decode(cmd Command, fam byte, block []byte) (Header, error) {
	h := Header{Command: cmd}
	if cmd == Local {
		// The receiver must skip whatever addresses a LOCAL header
		// carries and use the connection's own.
		return h, nil
	}
	var tlvs []byte
	switch fam {
	case famTCP4:
		if len(block) < 12 {
			return Header{}, malformed("TCP over IPv4 with a %d-byte address block, want at least 12", len(block))
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[0:4])), binary.BigEndian.Uint16(block[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(block[4:8])), binary.BigEndian.Uint16(block[10:12]))
		tlvs = block[12:]
	case famTCP6:
		if len(block) < 36 {
			return Header{}, malformed("TCP over IPv6 with a %d-byte address block, want at least 36", len(block))
		}
		src := netip.AddrFrom16([16]byte(block[0:16])).Unmap()
		dst := netip.AddrFrom16([16]byte(block[16:32])).Unmap()
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(block[32:34]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(block[34:36]))
		tlvs = block[36:]
	case famUnspec:
		return Header{}, malformed("PROXY command with an unspecified address family: the client's address is unknown")
	default:
		return Header{}, malformed("PROXY command for family/transport %#02x; only TCP over IPv4 (0x11) and IPv6 (0x21) are accepted", fam)
	}
	if a := h.Source.Addr(); a.IsUnspecified() || a.IsMulticast() || h.Source.Port() == 0 {
		return Header{}, malformed("source %s is not a client address", h.Source)
	}
	// TLVs are skipped, but their framing must hold.
	for len(tlvs) > 0 {
		if len(tlvs) < 3 {
			return Header{}, malformed("%d stray bytes after the TLVs", len(tlvs))
		}
		l := 3 + int(binary.BigEndian.Uint16(tlvs[1:3]))
		if l > len(tlvs) {
			return Header{}, malformed("TLV of type %#02x runs %d bytes past the header", tlvs[0], l-len(tlvs))
		}
		tlvs = tlvs[l:]
	}
	return h, nil
}

// readError names a read that ended after got bytes of the header.
func readError(err error, got int) error {
	switch {
	case errors.Is(err, io.EOF) && got == 0:
		return ErrEmpty
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return malformed("the connection ended after %d bytes of the header", got)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("PROXY protocol header not received in time (%d bytes so far): %w", got, err)
	}
	return fmt.Errorf("reading the PROXY protocol header: %w", err)
}

// Read reads the header at the start of c within timeout and clears the
// read deadline again; c's next byte is the first after the header.
func Read(c net.Conn, timeout time.Duration) (Header, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Header{}, err
	}
	h, err := Parse(c)
	if err != nil {
		return Header{}, err
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return Header{}, err
	}
	return h, nil
}

// Reason classifies an error of Parse or Read for counting refused
// headers: "timeout", "malformed", or "" for a connection that ended or
// failed before it could be judged (ErrEmpty, a reset).
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return ""
}

// Append appends h as a proxy sends it (without TLVs) to b: LOCAL with
// the UNSPEC family and no addresses; PROXY as TCP over IPv4 when both
// addresses are IPv4, else over IPv6 (an IPv4 address IPv4-mapped). An
// invalid Destination is sent as the unspecified address. For tests and
// tools.
func (h Header) Append(b []byte) []byte {
	b = append(b, Signature[:]...)
	if h.Command != Proxy {
		return append(b, 0x20|byte(h.Command&0x0F), famUnspec, 0, 0)
	}
	src, dst := h.Source.Addr().Unmap(), h.Destination.Addr().Unmap()
	b = append(b, 0x21)
	if src.Is4() && (dst.Is4() || !dst.IsValid()) {
		if !dst.IsValid() {
			dst = netip.IPv4Unspecified()
		}
		b = append(b, famTCP4, 0, 12)
		s4, d4 := src.As4(), dst.As4()
		b = append(b, s4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, famTCP6, 0, 36)
		s16, d16 := src.As16(), dst.As16()
		b = append(b, s16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, h.Source.Port())
	return binary.BigEndian.AppendUint16(b, h.Destination.Port())
}
