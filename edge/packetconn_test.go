package edge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/testutil"
)

func TestPacketConnReadFromFilters(t *testing.T) {
	binding := msgBindingRequest(t)
	alloc := msgAllocateWithIntegrity(t)
	cd := channelData(0x4000, []byte("payload"), false)
	badCookie := bytes.Clone(binding)
	badCookie[5] ^= 1
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	fake := &fakePacketConn{addr: addr, pkts: [][]byte{
		{0x80, 1, 2, 3, 4, 5, 6, 7},         // neither STUN nor ChannelData
		binding,                             // pass
		binding[:len(binding)-4],            // truncated STUN
		badCookie,                           // bad cookie
		make([]byte, DefaultMTU),            // oversized (at MTU)
		cd,                                  // pass
		channelData(0x4000, nil, false)[:3], // too short
		alloc,                               // pass, inspected
		msgSendIndication(t),                // pass
		msgBindingSuccess(t),                // pass (pion ignores it)
	}}
	var inspected [][]byte
	counters := &Counters{}
	pc := WrapPacketConn(fake, Options{
		Counters: counters,
		Log:      testutil.Logger(t),
		Screen:   func(raw []byte, _ net.Addr) []byte { inspected = append(inspected, bytes.Clone(raw)); return nil },
	})
	var got [][]byte
	buf := make([]byte, DefaultMTU)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if from != addr {
			t.Fatalf("from = %v", from)
		}
		got = append(got, bytes.Clone(buf[:n]))
	}
	want := [][]byte{binding, cd, alloc, msgSendIndication(t), nil}
	if len(got) != len(want) {
		t.Fatalf("passed %d datagrams, want %d", len(got), len(want))
	}
	for i, w := range want[:3] {
		if !bytes.Equal(got[i], w) {
			t.Fatalf("datagram %d = %x, want %x", i, got[i], w)
		}
	}
	if len(inspected) != 1 || !bytes.Equal(inspected[0], alloc) {
		t.Fatalf("inspected %d messages, want only the Allocate with integrity", len(inspected))
	}
	want2 := CounterValues{
		Malformed: 4, Oversized: 1, BindingRequests: 1, OtherRequests: 1, Indications: 1,
		Responses: 1, ChannelDataPackets: 1, ChannelDataBytes: 7,
	}
	if s := counters.Snapshot(); s != want2 {
		t.Fatalf("counters %+v\nwant     %+v", s, want2)
	}
}

func TestPacketConnMTUOption(t *testing.T) {
	cd := channelData(0x4000, make([]byte, 100), false) // 104 bytes
	fake := &fakePacketConn{pkts: [][]byte{cd, channelData(0x4000, make([]byte, 50), false)}}
	counters := &Counters{}
	pc := WrapPacketConn(fake, Options{MTU: 104, Counters: counters})
	n, _, err := pc.ReadFrom(make([]byte, 2000))
	if err != nil || n != 54 {
		t.Fatalf("ReadFrom = %d, %v; want the 54-byte datagram", n, err)
	}
	if s := counters.Snapshot(); s.Oversized != 1 || s.ChannelDataPackets != 1 {
		t.Fatalf("counters %+v", s)
	}
}

func TestPacketConnWriteTo(t *testing.T) {
	cd := channelData(0x4000, []byte("abc"), false)
	ind := build(t, typeOf(stun.MethodData, stun.ClassIndication),
		xorPeer(net.IPv4(127, 0, 0, 1), 9), stun.RawAttribute{Type: stun.AttrData, Value: []byte("x")})
	tests := []struct {
		name    string
		in      []byte
		rewrite bool
	}{
		{"channel data", cd, false},
		{"data indication", ind, false},
		{"garbage", []byte{0xC0, 1, 2}, false},
		{"binding success", msgBindingSuccess(t), true},
		{"channel bind denied", msgChannelBindDenied(t), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakePacketConn{record: true}
			counters := &Counters{}
			pc := WrapPacketConn(fake, Options{Software: "ferry", Counters: counters})
			n, err := pc.WriteTo(tt.in, &net.UDPAddr{})
			if err != nil || n != len(tt.in) {
				t.Fatalf("WriteTo = %d, %v; want %d", n, err, len(tt.in))
			}
			if len(fake.writes) != 1 {
				t.Fatalf("%d writes", len(fake.writes))
			}
			if !tt.rewrite {
				if !bytes.Equal(fake.writes[0], tt.in) {
					t.Fatal("pass-through modified")
				}
				return
			}
			m, err := checkWellFormed(fake.writes[0])
			if err != nil {
				t.Fatal(err)
			}
			if !m.Contains(stun.AttrSoftware) {
				t.Fatal("no SOFTWARE")
			}
			if s := counters.Snapshot(); s.SoftwareAdded != 1 {
				t.Fatalf("counters %+v", s)
			}
		})
	}
}

// TestPerPacketPathsDoNotAllocate is the zero-allocation guarantee for the
// per-packet paths of the UDP wrapper.
func TestPerPacketPathsDoNotAllocate(t *testing.T) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	cd := channelData(0x4000, make([]byte, 1200), false)
	tests := []struct {
		name  string
		pkt   []byte
		write bool
	}{
		{"ReadFrom ChannelData", cd, false},
		{"ReadFrom Send indication", msgSendIndication(t), false},
		{"ReadFrom request with integrity", msgAllocateWithIntegrity(t), false},
		{"ReadFrom dropped garbage then ChannelData", cd, false},
		{"WriteTo ChannelData", cd, true},
		{"WriteTo Data indication", msgSendIndication(t), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkts := [][]byte{tt.pkt}
			if tt.name == "ReadFrom dropped garbage then ChannelData" {
				pkts = [][]byte{{0xC0, 0, 0, 0}, tt.pkt}
			}
			fake := &fakePacketConn{pkts: pkts, repeat: true, addr: addr}
			pc := WrapPacketConn(fake, Options{
				Software: "ferry",
				Counters: &Counters{},
				Screen:   func([]byte, net.Addr) []byte { return nil },
			})
			buf := make([]byte, DefaultMTU)
			allocs := testing.AllocsPerRun(1000, func() {
				if tt.write {
					_, _ = pc.WriteTo(tt.pkt, addr)
				} else {
					fake.i = 0
					_, _, _ = pc.ReadFrom(buf)
				}
			})
			if allocs != 0 {
				t.Fatalf("%.2f allocations per packet", allocs)
			}
		})
	}
}

func TestRewritePathAllocations(t *testing.T) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	pc := WrapPacketConn(&fakePacketConn{}, Options{Software: "ferry"})
	resp := msgBindingSuccess(t)
	// Pooled scratch: allocation-free once warm (a GC may empty the pool).
	if a := testing.AllocsPerRun(1000, func() { _, _ = pc.WriteTo(resp, addr) }); a > 0.1 {
		t.Fatalf("%.2f allocations per rewritten response", a)
	}
}

func BenchmarkReadFromChannelData(b *testing.B) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	cd := channelData(0x4000, make([]byte, 1200), false)
	pc := WrapPacketConn(&fakePacketConn{pkts: [][]byte{cd}, repeat: true, addr: addr}, Options{Counters: &Counters{}})
	buf := make([]byte, DefaultMTU)
	b.ReportAllocs()
	b.SetBytes(int64(len(cd)))
	for b.Loop() {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteToChannelData(b *testing.B) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	cd := channelData(0x4000, make([]byte, 1200), false)
	pc := WrapPacketConn(&fakePacketConn{}, Options{Software: "ferry", Counters: &Counters{}})
	b.ReportAllocs()
	b.SetBytes(int64(len(cd)))
	for b.Loop() {
		if _, err := pc.WriteTo(cd, addr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteToBindingSuccessRewrite(b *testing.B) {
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	resp := msgBindingSuccess(b)
	pc := WrapPacketConn(&fakePacketConn{}, Options{Software: "ferry", Counters: &Counters{}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pc.WriteTo(resp, addr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCountersParallel(b *testing.B) {
	counters := &Counters{}
	cd := channelData(0x4000, make([]byte, 1200), false)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
		pc := WrapPacketConn(&fakePacketConn{pkts: [][]byte{cd}, repeat: true, addr: addr}, Options{Counters: counters})
		buf := make([]byte, DefaultMTU)
		for pb.Next() {
			_, _, _ = pc.ReadFrom(buf)
		}
	})
}
