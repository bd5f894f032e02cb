package edge

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pion/stun/v3"
)

func TestClassifyDatagram(t *testing.T) {
	binding := msgBindingRequest(t)
	badCookie := bytes.Clone(binding)
	badCookie[4] ^= 0xFF
	badLen := bytes.Clone(binding)
	binary.BigEndian.PutUint16(badLen[2:4], uint16(len(binding)-stunHeaderSize-2))
	truncated := binding[:len(binding)-4]
	trailing := append(bytes.Clone(binding), 0, 0, 0, 0)
	overrun := bytes.Clone(binding)
	binary.BigEndian.PutUint16(overrun[stunHeaderSize+2:], 200) // FINGERPRINT claims 200 bytes
	topBits10 := bytes.Clone(binding)
	topBits10[0] |= 0x80

	tests := []struct {
		name      string
		in        []byte
		kind      kind
		integrity bool
		dataLen   int
	}{
		{"binding request", binding, kindBindingRequest, false, 0},
		{"binding request with integrity", build(t, stun.BindingRequest, stun.NewShortTermIntegrity("pw"), stun.Fingerprint), kindBindingRequest, true, 0},
		{"allocate with integrity", msgAllocateWithIntegrity(t), kindRequest, true, 0},
		{"allocate without integrity", build(t, typeOf(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP()), kindRequest, false, 0},
		{"send indication", msgSendIndication(t), kindIndication, false, 0},
		{"indication with integrity is not inspected", build(t, typeOf(stun.MethodSend, stun.ClassIndication), stun.NewShortTermIntegrity("pw")), kindIndication, false, 0},
		{"binding success", msgBindingSuccess(t), kindResponse, false, 0},
		{"error response", msgChannelBindDenied(t), kindResponse, false, 0},
		{"header-only STUN", build(t, stun.BindingRequest), kindBindingRequest, false, 0},
		{"channel data unpadded", channelData(0x4000, []byte("hello"), false), kindChannelData, false, 5},
		{"channel data padded", channelData(0x4001, []byte("hello"), true), kindChannelData, false, 5},
		{"channel data empty", channelData(0x4000, nil, false), kindChannelData, false, 0},
		{"channel data top of pion range", channelData(0x7FFF, []byte("x"), false), kindChannelData, false, 1},
		{"channel number 0x8000", channelData(0x8000, []byte("x"), false), kindInvalid, false, 0},
		{"channel number 0x3FFF", channelData(0x3FFF, []byte("xxxx"), false), kindInvalid, false, 0},
		{"channel data length beyond datagram", channelData(0x4000, []byte("hello"), false)[:7], kindInvalid, false, 0},
		{"channel data more than padding", append(channelData(0x4000, []byte("hello"), true), 0, 0, 0, 0), kindInvalid, false, 0},
		{"STUN bad cookie", badCookie, kindInvalid, false, 0},
		{"STUN length not multiple of 4", badLen, kindInvalid, false, 0},
		{"STUN truncated", truncated, kindInvalid, false, 0},
		{"STUN trailing bytes", trailing, kindInvalid, false, 0},
		{"STUN attribute overrun", overrun, kindInvalid, false, 0},
		{"top bits 10", topBits10, kindInvalid, false, 0},
		{"top bits 11", []byte{0xFF, 0xFF, 0, 0, 1, 2, 3, 4}, kindInvalid, false, 0},
		{"three bytes", []byte{0x40, 0, 0}, kindInvalid, false, 0},
		{"empty", nil, kindInvalid, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classifyDatagram(tt.in)
			if got.kind != tt.kind || got.integrity != tt.integrity || got.dataLen != tt.dataLen {
				t.Fatalf("classifyDatagram = %+v, want kind %d integrity %v dataLen %d", got, tt.kind, tt.integrity, tt.dataLen)
			}
			if got.kind >= kindBindingRequest {
				m := &stun.Message{Raw: bytes.Clone(tt.in)}
				if err := m.Decode(); err != nil {
					t.Fatalf("accepted as STUN but pion/stun rejects it: %v", err)
				}
			}
		})
	}
}

func TestStreamFrameSize(t *testing.T) {
	binding := msgBindingRequest(t)
	oversized := bytes.Clone(binding[:20])
	binary.BigEndian.PutUint16(oversized[2:4], 1600-20)
	tests := []struct {
		name string
		in   []byte
		want int
		err  error
	}{
		{"empty", nil, 0, nil},
		{"STUN complete", binding, len(binding), nil},
		{"STUN with next frame", append(bytes.Clone(binding), 0x40, 0, 0, 0), len(binding), nil},
		{"STUN partial header", binding[:7], 0, nil},
		{"STUN partial body", binding[:len(binding)-1], 0, nil},
		{"STUN bad cookie", append([]byte{0, 1, 0, 0}, 1, 2, 3, 4), 0, ErrInvalidFrame},
		{"STUN odd length", []byte{0, 1, 0, 2, 0x21, 0x12, 0xA4, 0x42}, 0, ErrInvalidFrame},
		{"STUN at MTU", oversized, 0, ErrFrameTooLarge},
		{"channel data padded", channelData(0x4000, []byte("hello"), true), 12, nil},
		{"channel data needs padding", channelData(0x4000, []byte("hello"), false), 0, nil},
		{"channel data header partial", []byte{0x40, 0}, 0, nil},
		{"channel data at MTU", []byte{0x40, 0, 0x06, 0x3C}, 0, ErrFrameTooLarge},
		{"channel data below MTU", []byte{0x40, 0, 0x06, 0x38}, 0, nil},
		{"invalid first byte", []byte{0x80}, 0, ErrInvalidFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := streamFrameSize(tt.in, DefaultMTU)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Fatalf("streamFrameSize = %d, %v; want %d, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	msgs := [][]byte{
		channelData(0x4000, make([]byte, 160), false),
		msgAllocateWithIntegrity(t),
		msgSendIndication(t),
		{0xFF, 1, 2, 3},
	}
	var sink info
	allocs := testing.AllocsPerRun(1000, func() {
		for _, m := range msgs {
			sink = classifyDatagram(m)
		}
	})
	_ = sink
	if allocs != 0 {
		t.Fatalf("classifyDatagram allocates %.1f times per run", allocs)
	}
}
