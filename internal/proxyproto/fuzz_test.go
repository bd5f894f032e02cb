package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// FuzzParse feeds untrusted bytes to Parse: nothing may panic, no read may
// go past 16+MaxBlockLen bytes or past the header's own length, every
// error is classified, and a header Parse accepts is a LOCAL or a PROXY
// with a usable client address that Append writes back so that it parses
// to the same header.
func FuzzParse(f *testing.F) {
	ap := netip.MustParseAddrPort
	for _, h := range []Header{
		{Proxy, ap("203.0.113.7:4444"), ap("192.0.2.1:3478")},
		{Proxy, ap("[2001:db8::7]:4444"), ap("[2001:db8::1]:5349")},
		{Command: Local},
	} {
		f.Add(h.Append(nil))
		f.Add(append(h.Append(nil), 0x00, 0x01, 0x00, 0x00))
	}
	f.Add(hdr("21 11 000f cb007107 c0000201 115c 0d96 04 0000"))
	f.Add(hdr("21 11 0010 cb007107 c0000201 115c 0d96 04 0005 00"))
	f.Add(hdr("21 31 0000"))
	f.Add(hdr("21 11 0400"))
	f.Add([]byte("PROXY TCP4 203.0.113.7 192.0.2.1 4444 3478\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := Parse(r)
		used := len(b) - r.Len()
		if used > 16+MaxBlockLen {
			t.Fatalf("read %d bytes, more than a header may have", used)
		}
		if err != nil {
			if Reason(err) == "" && !errors.Is(err, ErrEmpty) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if used < 16 || used != 16+int(binary.BigEndian.Uint16(b[14:16])) {
			t.Fatalf("read %d bytes of a header of %d", used, len(b))
		}
		switch h.Command {
		case Local:
			if h.Source.IsValid() || h.Destination.IsValid() {
				t.Fatalf("LOCAL with addresses %+v", h)
			}
		case Proxy:
			if !h.Source.IsValid() || h.Source.Port() == 0 || h.Source.Addr().IsUnspecified() || h.Source.Addr().Is4In6() {
				t.Fatalf("PROXY with source %s", h.Source)
			}
		default:
			t.Fatalf("command %v", h.Command)
		}
		back, err := Parse(bytes.NewReader(h.Append(nil)))
		if err != nil || back != h {
			t.Fatalf("%+v written back parses as %+v, %v", h, back, err)
		}
	})
}
