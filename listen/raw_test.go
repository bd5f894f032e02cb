package listen

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/ferryrtc/ferry/config"
)

// Regression 1: a second server on a port another process holds fails to
// start, naming the port, instead of joining its SO_REUSEPORT group and
// taking its traffic. (The probe binds without SO_REUSEPORT, exactly as a
// second process would find the port.)
func TestPortHeldIsAnError(t *testing.T) {
	udp, err := config.ParseListener("udp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first, err := UDPSet(udp, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range first {
			_ = s.Close()
		}
	}()
	udp.Addr = first[0].Addr
	if first[1].Addr != first[0].Addr {
		t.Fatalf("set bound %v and %v", first[0].Addr, first[1].Addr)
	}
	_, err = UDPSet(udp, 2)
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("second UDP set on %v: %v, want ErrPortInUse", udp.Addr, err)
	}
	t.Logf("udp: %v", err)

	tcp, _ := config.ParseListener("tcp://127.0.0.1:0")
	ln, err := TCP(context.Background(), tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tcp.Addr, _ = netip.ParseAddrPort(ln.Addr().String())
	if _, err := TCP(context.Background(), tcp); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("second TCP listener on %v: %v, want ErrPortInUse", tcp.Addr, err)
	} else {
		t.Logf("tcp: %v", err)
	}
}

func TestCheckBindable(t *testing.T) {
	if err := CheckBindable(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	err := CheckBindable(netip.MustParseAddr("192.0.2.55"))
	if err == nil {
		t.Fatal("192.0.2.55 (not on this host) bindable")
	}
	t.Log(err)
}
