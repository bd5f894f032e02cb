package relay

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// TestEvenPortProbeIsHeld: pion's even-port probe (no user, no requested
// port) closes its socket and binds the port again for the allocation; in
// between nobody else may get it, and the port after it is held for the
// RESERVATION-TOKEN's Allocate.
func TestEvenPortProbeIsHeld(t *testing.T) {
	lo, hi := testutil.FreePortRange(t, lo4, 4)
	pa := newAllocator(t, lo4, ext4, lo, hi, nil)
	var even int
	for even == 0 {
		c, addr, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
		if err != nil {
			t.Fatal(err)
		}
		if p := addr.(*net.UDPAddr).Port; p%2 == 0 {
			even = p
		}
		_ = c.Close()
	}
	// While parked, ordinary allocations get the other ports, never it.
	var others []net.PacketConn
	defer func() {
		for _, c := range others {
			_ = c.Close()
		}
	}()
	for {
		c, addr, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "bob"})
		if err != nil {
			break
		}
		if addr.(*net.UDPAddr).Port == even {
			t.Fatalf("parked even port %d handed to another allocation", even)
		}
		others = append(others, c)
	}
	for _, c := range others {
		_ = c.Close()
	}
	others = nil
	// pion's rebind gets it, and the next port is then held for RTCP.
	c, addr, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "alice", RequestedPort: even})
	if err != nil {
		t.Fatalf("rebinding the parked even port: %v", err)
	}
	defer c.Close()
	if addr.(*net.UDPAddr).Port != even {
		t.Fatalf("got port %d, want %d", addr.(*net.UDPAddr).Port, even)
	}
	if even < int(hi) {
		for {
			c, addr, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "bob"})
			if err != nil {
				break
			}
			if addr.(*net.UDPAddr).Port == even+1 {
				t.Fatalf("reserved port %d handed to another allocation", even+1)
			}
			others = append(others, c)
		}
		c2, addr2, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4", UserID: "alice", RequestedPort: even + 1})
		if err != nil {
			t.Fatalf("RTCP port %d was not held: %v", even+1, err)
		}
		defer c2.Close()
		if addr2.(*net.UDPAddr).Port != even+1 {
			t.Fatalf("got port %d, want %d", addr2.(*net.UDPAddr).Port, even+1)
		}
	}
}

// TestEvenPortProbeNeedsFreeSuccessor: the probe offers only an even port
// whose successor is free too, and holds the successor, so the
// RESERVATION-TOKEN's Allocate cannot fail on a busy port; with no such pair
// the probe fails (pion answers 508 at once, not on the second Allocate).
func TestEvenPortProbeNeedsFreeSuccessor(t *testing.T) {
	lo, hi := testutil.FreePortRange(t, lo4, 8)
	var pairs []int // even ports whose successor is in range
	for p := int(lo); p < int(hi); p++ {
		if p%2 == 0 {
			pairs = append(pairs, p)
		}
	}
	bind := func(port int) (*net.UDPConn, error) {
		return net.ListenUDP("udp4", &net.UDPAddr{IP: lo4.AsSlice(), Port: port})
	}
	occupy := func(ports ...int) {
		for _, p := range ports {
			c, err := bind(p)
			if err != nil {
				t.Fatalf("occupy %d: %v", p, err)
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	// Every pair but the last has its odd port taken by someone else.
	for _, p := range pairs[:len(pairs)-1] {
		occupy(p + 1)
	}
	free := pairs[len(pairs)-1]
	pa := newAllocator(t, lo4, ext4, lo, hi, nil)
	for range 20 { // the probe picks at random: ask often
		c, addr, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"})
		if err != nil {
			t.Fatalf("probe with one free pair left: %v", err)
		}
		if got := addr.(*net.UDPAddr).Port; got != free {
			t.Fatalf("probe offered port %d; only %d has a free successor", got, free)
		}
		if c2, err := bind(free + 1); err == nil {
			_ = c2.Close()
			t.Fatalf("successor %d not held after the probe", free+1)
		}
		// Release the pair as an abandoned probe would, once expired.
		_ = c.Close()
		for _, ap := range []int{free, free + 1} {
			if s := pa.parked.take(netip.AddrPortFrom(lo4, uint16(ap))); s != nil {
				_ = s.Close()
			}
		}
	}
	occupy(free + 1)
	if _, _, err := pa.AllocatePacketConn(turn.AllocateListenerConfig{Network: "udp4"}); !errors.Is(err, ErrPortsExhausted) {
		t.Fatalf("probe with no free pair: %v, want ErrPortsExhausted", err)
	}
}
