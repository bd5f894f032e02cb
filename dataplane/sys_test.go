package dataplane

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/listen"
)

// TestTxBatchSegments sends runs of datagrams that UDP_SEGMENT can carry as
// one message (same destination, same size, the last of a run shorter) and
// runs it cannot, and checks that the receivers get every datagram, whole,
// in order, and that the batch used as few messages as it should.
func TestTxBatchSegments(t *testing.T) {
	if !gsoSupported() {
		t.Skip("the kernel has no UDP_SEGMENT")
	}
	src, err := listen.UDPAt(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var rx [2]*net.UDPConn
	for i := range rx {
		if rx[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		defer rx[i].Close()
	}
	dst := [2]netip.AddrPort{rx[0].LocalAddr().(*net.UDPAddr).AddrPort(), rx[1].LocalAddr().(*net.UDPAddr).AddrPort()}
	type dgram struct {
		to   int
		size int
	}
	plan := []dgram{{0, 100}, {0, 100}, {0, 100}, {0, 50}, {0, 100}, {0, 100}, {1, 100}, {1, 100}, {0, 100}, {1, 200}, {1, 100}}
	// Expected messages: [0:100x3+50] [0:100x2] [1:100x2] [0:100] [1:200+100]
	const wantMessages = 5
	for _, gso := range []bool{true, false} {
		b := newTxBatch(batchSize, gso)
		b.fd = src.FD
		var sent [2][][]byte
		for i, d := range plan {
			payload := bytes.Repeat([]byte{byte(i + 1)}, d.size)
			sent[d.to] = append(sent[d.to], payload)
			if !b.add(payload, dst[d.to], netip.AddrPort{}) {
				t.Fatal("batch full")
			}
		}
		messages := b.n
		if ok, dropped := b.flush(); ok != len(plan) || dropped != 0 {
			t.Fatalf("gso %v: sent %d, dropped %d of %d", gso, ok, dropped, len(plan))
		}
		if gso && messages != wantMessages {
			t.Errorf("gso: %d messages for %d datagrams, want %d", messages, len(plan), wantMessages)
		}
		if !gso && messages != len(plan) {
			t.Errorf("no gso: %d messages for %d datagrams", messages, len(plan))
		}
		buf := make([]byte, 2048)
		for r := range rx {
			for k, want := range sent[r] {
				_ = rx[r].SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := rx[r].Read(buf)
				if err != nil {
					t.Fatalf("gso %v: receiver %d datagram %d: %v", gso, r, k, err)
				}
				if !bytes.Equal(buf[:n], want) {
					t.Fatalf("gso %v: receiver %d datagram %d: %d bytes of %d, want %d of %d", gso, r, k, n, buf[0], len(want), want[0])
				}
			}
		}
	}
	var v int
	if v, err = unix.GetsockoptInt(src.FD, unix.IPPROTO_UDP, unix.UDP_SEGMENT); err != nil || v != 0 {
		t.Errorf("the socket's own UDP_SEGMENT is %d (%v): segmentation must be per message", v, err)
	}
}
