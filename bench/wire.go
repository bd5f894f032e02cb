package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ChannelData (RFC 8656 section 12.4): a 2-byte channel number in
// 0x4000..0x4FFF, a 2-byte length of the application data, the data, and,
// over TCP only, padding to a multiple of 4 bytes.
const (
	channelHeader = 4
	// benchChannel is the channel every allocation binds (numbers are per
	// allocation, so they may all use the first one).
	benchChannel  = 0x4000
	stunHeader    = 20
	stampSize     = 24 // send time, sequence number, wait at the echo peer
	frameBufBytes = 64 << 10
)

// channelFrameLen is the bytes a ChannelData message with n data bytes
// takes on the wire: padded to 4 over TCP.
func channelFrameLen(n int, tcp bool) int {
	l := channelHeader + n
	if tcp {
		l = (l + 3) &^ 3
	}
	return l
}

// putChannelData writes a ChannelData message for channel ch with n data
// bytes into b (data left as it is, padding zeroed over TCP) and returns its
// wire length. b must hold channelFrameLen(n, tcp) bytes.
func putChannelData(b []byte, ch uint16, n int, tcp bool) int {
	l := channelFrameLen(n, tcp)
	_ = b[l-1]
	binary.BigEndian.PutUint16(b[0:2], ch)
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	for i := channelHeader + n; i < l; i++ {
		b[i] = 0
	}
	return l
}

// parseChannelData returns the channel number and data of a ChannelData
// message, ignoring trailing padding; ok is false for anything else.
func parseChannelData(b []byte) (ch uint16, data []byte, ok bool) {
	if len(b) < channelHeader {
		return 0, nil, false
	}
	ch = binary.BigEndian.Uint16(b[0:2])
	if ch < 0x4000 || ch > 0x4FFF {
		return 0, nil, false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if channelHeader+n > len(b) {
		return 0, nil, false
	}
	return ch, b[channelHeader : channelHeader+n], true
}

// The payload starts with a stamp: the send time (ns since the Unix epoch,
// wall clock like the kernel's receive stamps), a sequence number, and the
// time the packet waited at the echo peer (ns, written by the peer).

// putStamp writes the send time and sequence number at the start of a
// payload and zeroes the wait.
func putStamp(p []byte, sentNS int64, seq uint64) {
	_ = p[stampSize-1]
	binary.BigEndian.PutUint64(p[0:8], uint64(sentNS))
	binary.BigEndian.PutUint64(p[8:16], seq)
	binary.BigEndian.PutUint64(p[16:24], 0)
}

// putHold records how long the echo peer held the packet.
func putHold(p []byte, holdNS int64) {
	binary.BigEndian.PutUint64(p[16:24], uint64(max(holdNS, 0)))
}

// readStamp is the inverse of putStamp and putHold.
func readStamp(p []byte) (sentNS int64, seq uint64, holdNS int64, ok bool) {
	if len(p) < stampSize {
		return 0, 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(p[0:8])), binary.BigEndian.Uint64(p[8:16]), int64(binary.BigEndian.Uint64(p[16:24])), true
}

// frameLen returns the length of the STUN or ChannelData frame starting
// b (over TCP, ChannelData is padded), or 0 if b is shorter than a header.
func frameLen(b []byte) (int, error) {
	if len(b) < channelHeader {
		return 0, nil
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	switch b[0] >> 6 {
	case 0: // STUN: 20-byte header plus attributes
		return stunHeader + n, nil
	case 1: // ChannelData
		return channelFrameLen(n, true), nil
	default:
		return 0, fmt.Errorf("stream frame starts with %#x: neither STUN nor ChannelData", b[0])
	}
}

// framer splits a TCP byte stream into STUN and ChannelData frames without
// allocating.
type framer struct {
	r    io.Reader
	buf  []byte
	head int // start of unconsumed bytes
	tail int // end of read bytes
}

func newFramer(r io.Reader) *framer {
	return &framer{r: r, buf: make([]byte, frameBufBytes)}
}

var errFrameTooLong = errors.New("frame longer than the read buffer")

// next returns the next complete frame already read, or nil. The slice is
// valid until the next fill.
func (f *framer) next() ([]byte, error) {
	n, err := frameLen(f.buf[f.head:f.tail])
	if err != nil || n == 0 || f.tail-f.head < n {
		if n > len(f.buf) {
			return nil, errFrameTooLong
		}
		return nil, err
	}
	b := f.buf[f.head : f.head+n]
	f.head += n
	return b, nil
}

// fill moves unconsumed bytes to the front and does one Read.
func (f *framer) fill() error {
	if f.head > 0 {
		f.tail = copy(f.buf, f.buf[f.head:f.tail])
		f.head = 0
	}
	if f.tail == len(f.buf) {
		return errFrameTooLong
	}
	n, err := f.r.Read(f.buf[f.tail:])
	f.tail += n
	return err
}
