package relay

import (
	"net"
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
