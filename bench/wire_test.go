package bench

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"testing/iotest"

	"github.com/pion/stun/v3"
)

func TestChannelDataEncode(t *testing.T) {
	tests := []struct {
		name    string
		n       int
		tcp     bool
		wantLen int
	}{
		{"udp 200", 200, false, 204},
		{"udp 17 unpadded", 17, false, 21},
		{"tcp 200 already aligned", 200, true, 204},
		{"tcp 17 padded", 17, true, 24},
		{"tcp 18 padded", 18, true, 24},
		{"tcp 20 aligned", 20, true, 24},
		{"empty", 0, true, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Repeat([]byte{0xEE}, 64+tt.n)
			for i := channelHeader; i < channelHeader+tt.n; i++ {
				b[i] = byte(i)
			}
			l := putChannelData(b, 0x4001, tt.n, tt.tcp)
			if l != tt.wantLen || l != channelFrameLen(tt.n, tt.tcp) {
				t.Fatalf("length %d, want %d", l, tt.wantLen)
			}
			if got := binary.BigEndian.Uint32(b); got != 0x4001<<16|uint32(tt.n) {
				t.Fatalf("header %#x", got)
			}
			for i := channelHeader + tt.n; i < l; i++ {
				if b[i] != 0 {
					t.Fatalf("padding byte %d = %#x, want 0", i, b[i])
				}
			}
			if b[l] != 0xEE {
				t.Fatalf("wrote past the frame")
			}
			ch, data, ok := parseChannelData(b[:l])
			if !ok || ch != 0x4001 || len(data) != tt.n {
				t.Fatalf("parse = %#x, %d bytes, %v", ch, len(data), ok)
			}
			if fl, err := frameLen(b[:l]); err != nil || fl != channelFrameLen(tt.n, true) {
				t.Fatalf("frameLen = %d, %v", fl, err)
			}
		})
	}
}

func TestParseChannelDataRejects(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", []byte{0x40, 0x00, 0x00}},
		{"channel below range", []byte{0x3F, 0xFF, 0x00, 0x00}},
		{"channel above range", []byte{0x50, 0x00, 0x00, 0x00}},
		{"length beyond data", []byte{0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4}},
		{"stun header", []byte{0x01, 0x01, 0x00, 0x00}},
	}
	for _, tt := range tests {
		if _, _, ok := parseChannelData(tt.b); ok {
			t.Errorf("%s: parsed %x", tt.name, tt.b)
		}
	}
}

func TestStamp(t *testing.T) {
	p := bytes.Repeat([]byte{0xFF}, 32)
	putStamp(p, 123456789, 42)
	sent, seq, hold, ok := readStamp(p)
	if !ok || sent != 123456789 || seq != 42 || hold != 0 {
		t.Fatalf("readStamp = %d, %d, %d, %v", sent, seq, hold, ok)
	}
	putHold(p, 7000)
	if _, _, hold, _ := readStamp(p); hold != 7000 {
		t.Fatalf("hold %d after putHold(7000)", hold)
	}
	putHold(p, -5) // clock step: never negative
	if _, _, hold, _ := readStamp(p); hold != 0 {
		t.Fatalf("hold %d after putHold(-5)", hold)
	}
	if _, _, _, ok := readStamp(p[:stampSize-1]); ok {
		t.Fatal("readStamp of a short payload succeeded")
	}
}

// TestFramer splits a stream of STUN messages and padded ChannelData read a
// byte at a time or all at once.
func TestFramer(t *testing.T) {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewSoftware("x"), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	var want [][]byte
	add := func(b []byte) {
		stream = append(stream, b...)
		want = append(want, b)
	}
	for i, n := range []int{200, 17, 0, 1} {
		b := make([]byte, channelFrameLen(n, true))
		putChannelData(b, uint16(0x4000+i), n, true)
		add(b)
		add(req.Raw)
	}
	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"halves":   func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			f := newFramer(r())
			var got [][]byte
			for {
				b, err := f.next()
				if err != nil {
					t.Fatal(err)
				}
				if b != nil {
					got = append(got, append([]byte(nil), b...))
					continue
				}
				if err := f.fill(); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d frames, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("frame %d = %x, want %x", i, got[i], want[i])
				}
			}
		})
	}
}

func TestFramerRejectsGarbage(t *testing.T) {
	f := newFramer(bytes.NewReader([]byte{0xC0, 0, 0, 0}))
	if err := f.fill(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.next(); err == nil {
		t.Fatal("next accepted a frame starting 0xC0")
	}
}
