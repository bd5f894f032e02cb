package proxyproto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// hdr builds a header from hex pieces after the signature.
func hdr(pieces ...string) []byte {
	b := append([]byte(nil), Signature[:]...)
	for _, p := range pieces {
		x, err := hex.DecodeString(strings.ReplaceAll(p, " ", ""))
		if err != nil {
			panic(err)
		}
		b = append(b, x...)
	}
	return b
}

func TestParse(t *testing.T) {
	ap := netip.MustParseAddrPort
	const (
		v4addrs = "cb007107 c0000201 115c 0d96"                                                              // 203.0.113.7:4444 -> 192.0.2.1:3478
		v6addrs = "20010db8000000000000000000000007 20010db8000000000000000000000001 115c 0d96"              // [2001:db8::7]:4444 -> [2001:db8::1]:3478
		mapped  = "00000000000000000000ffffcb007107 00000000000000000000ffffc0000201 115c 0d96"              // 4-in-6
		aws     = "ea 001a 01 766670652d3031323334353637383961626364656600000000"                            // PP2_TYPE_AWS, VPC endpoint ID
		unix    = "2f746d702f612e736f636b000000000000000000000000000000000000000000000000000000000000000000" // part of an AF_UNIX block
	)
	tests := []struct {
		name string
		in   []byte
		want Header
		err  string // substring of the error; "" for success
		tail string // bytes left after the header
	}{
		{"proxy tcp4", hdr("21 11 000c", v4addrs), Header{Proxy, ap("203.0.113.7:4444"), ap("192.0.2.1:3478")}, "", ""},
		{"proxy tcp4 then payload", append(hdr("21 11 000c", v4addrs), "STUN"...), Header{Proxy, ap("203.0.113.7:4444"), ap("192.0.2.1:3478")}, "", "STUN"},
		{"proxy tcp6", hdr("21 21 0024", v6addrs), Header{Proxy, ap("[2001:db8::7]:4444"), ap("[2001:db8::1]:3478")}, "", ""},
		{"proxy tcp6 v4-mapped is unmapped", hdr("21 21 0024", mapped), Header{Proxy, ap("203.0.113.7:4444"), ap("192.0.2.1:3478")}, "", ""},
		{"proxy tcp4 with TLVs", hdr("21 11 002c", v4addrs, aws, "04 0000"), Header{Proxy, ap("203.0.113.7:4444"), ap("192.0.2.1:3478")}, "", ""},
		{"local unspec", hdr("20 00 0000"), Header{Command: Local}, "", ""},
		{"local with addresses skips them", append(hdr("20 11 000c", v4addrs), 'x'), Header{Command: Local}, "", "x"},
		{"local unix skips the block", hdr("20 31 002c", unix), Header{Command: Local}, "", ""},

		{"empty", nil, Header{}, "closed before", ""},
		{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4444 3478\r\n"), Header{}, "version 1", ""},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{}, "version 1", ""},
		{"tls client hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x00, 0x00}, Header{}, "no PROXY protocol v2 signature", ""},
		{"stun binding", []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, Header{}, "signature", ""},
		{"short signature", Signature[:7], Header{}, "ended after 7 bytes", ""},
		{"signature only", hdr(), Header{}, "ended after 12 bytes", ""},
		{"truncated fixed part", hdr("21 11"), Header{}, "ended after 14 bytes", ""},
		{"truncated block", hdr("21 11 000c cb00"), Header{}, "ended after 18 bytes", ""},
		{"version 1 binary", hdr("11 11 000c", v4addrs), Header{}, "version 1, want 2", ""},
		{"version 3", hdr("31 11 000c", v4addrs), Header{}, "version 3", ""},
		{"unknown command", hdr("22 11 000c", v4addrs), Header{}, "unknown command", ""},
		{"block too long", hdr("21 11 0401"), Header{}, "more than the 1024", ""},
		{"block max length", hdr("21 11 ffff"), Header{}, "more than the 1024", ""},
		{"tcp4 block short", hdr("21 11 000b", v4addrs[:len(v4addrs)-2]), Header{}, "want at least 12", ""},
		{"tcp6 block short", hdr("21 21 000c", v4addrs), Header{}, "want at least 36", ""},
		{"proxy unspec", hdr("21 00 0000"), Header{}, "unspecified address family", ""},
		{"proxy udp4", hdr("21 12 000c", v4addrs), Header{}, "only TCP", ""},
		{"proxy udp6", hdr("21 22 0024", v6addrs), Header{}, "only TCP", ""},
		{"proxy unix", hdr("21 31 002c", unix), Header{}, "only TCP", ""},
		{"source unspecified", hdr("21 11 000c", "00000000 c0000201 115c 0d96"), Header{}, "not a client address", ""},
		{"source port zero", hdr("21 11 000c", "cb007107 c0000201 0000 0d96"), Header{}, "not a client address", ""},
		{"source multicast", hdr("21 11 000c", "e0000001 c0000201 115c 0d96"), Header{}, "not a client address", ""},
		{"truncated TLV", hdr("21 11 0010", v4addrs, "04 0005 00"), Header{}, "TLV of type 0x04 runs 4 bytes past", ""},
		{"stray TLV bytes", hdr("21 11 000e", v4addrs, "0400"), Header{}, "2 stray bytes", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(tt.in)
			h, err := Parse(r)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse: %v, want an error with %q", err, tt.err)
				}
				t.Log(err)
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if h != tt.want {
				t.Fatalf("Parse = %+v, want %+v", h, tt.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tt.tail {
				t.Fatalf("left %q after the header, want %q", rest, tt.tail)
			}
		})
	}
}

func TestReason(t *testing.T) {
	_, empty := Parse(bytes.NewReader(nil))
	_, bad := Parse(bytes.NewReader([]byte("GET / HTTP/1.1\r\n")))
	_, short := Parse(bytes.NewReader(Signature[:3]))
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{empty, ""},
		{bad, "malformed"},
		{ErrV1, "malformed"},
		{short, "malformed"},
		{readError(os.ErrDeadlineExceeded, 5), "timeout"},
		{readError(errors.New("connection reset by peer"), 5), ""},
	} {
		if got := Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if !errors.Is(empty, ErrEmpty) {
		t.Errorf("empty connection: %v, want ErrEmpty", empty)
	}
}

// TestAppendRoundTrip: what Append writes, Parse reads back.
func TestAppendRoundTrip(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, h := range []Header{
		{Proxy, ap("203.0.113.7:4444"), ap("192.0.2.1:3478")},
		{Proxy, ap("[2001:db8::7]:4444"), ap("[2001:db8::1]:5349")},
		{Command: Local},
	} {
		b := h.Append(nil)
		got, err := Parse(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if got != h {
			t.Fatalf("round trip %+v -> %+v", h, got)
		}
	}
}

// TestReadDeadline: a peer that sends part of a header and stalls is cut
// off at the timeout, and the bytes after a header stay unread.
func TestReadDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _, _ = b.Write(Signature[:5]) }()
	start := time.Now()
	_, err := Read(a, 100*time.Millisecond)
	if Reason(err) != "timeout" {
		t.Fatalf("stalled header: %v (reason %q), want a timeout", err, Reason(err))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %s", d)
	}

	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	want := Header{Proxy, netip.MustParseAddrPort("203.0.113.7:4444"), netip.MustParseAddrPort("192.0.2.1:3478")}
	go func() { _, _ = d.Write(append(want.Append(nil), "after"...)) }()
	h, err := Read(c, time.Second)
	if err != nil || h != want {
		t.Fatalf("Read = %+v, %v", h, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "after" {
		t.Fatalf("after the header: %q, %v", buf, err)
	}
}
