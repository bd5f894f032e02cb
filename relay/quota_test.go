package relay

import (
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/turn/v5"
)

func mustQuota(t testing.TB, o QuotaOptions) *Quota {
	t.Helper()
	q, err := NewQuota(o)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestNewQuotaErrors(t *testing.T) {
	for _, o := range []QuotaOptions{{UserAllocations: -1}, {TotalAllocations: -1}, {AllocationBandwidth: -1}, {UserBandwidth: -1}} {
		if _, err := NewQuota(o); err == nil {
			t.Errorf("NewQuota(%+v) accepted", o)
		}
	}
}

// TestQuotaReservations follows pion's call order: QuotaHandler, then the
// relay (acquire), then the relay socket closing (release).
func TestQuotaReservations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := mustQuota(t, QuotaOptions{UserAllocations: 2, TotalAllocations: 3})
		refused := 0
		h := NewQuotaHandler(q, func() { refused++ })
		src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
		admit := func(user string) (*allocQuota, bool, error) {
			if !h(user, "r", src) {
				return nil, false, nil
			}
			a, err := q.acquire(user)
			return a, true, err
		}
		a1, ok, err := admit("alice")
		if !ok || err != nil {
			t.Fatal("first allocation refused")
		}
		a2, _, _ := admit("alice")
		if _, ok, _ := admit("alice"); ok {
			t.Fatal("third allocation of alice admitted")
		}
		b1, ok, err := admit("bob")
		if !ok || err != nil {
			t.Fatal("bob refused")
		}
		if _, ok, err := admit("carol"); !ok || !errors.Is(err, ErrCapacity) {
			t.Fatalf("fourth allocation: admitted %v, err %v; want ErrCapacity", ok, err)
		}
		if st := q.Stats(); st.Allocations != 3 || st.Users != 2 || st.RefusedUser != 1 || st.RefusedTotal != 1 || refused != 1 {
			t.Fatalf("stats %+v, refused %d", st, refused)
		}
		a1.release()
		a1.release() // once only
		if a, ok, err := admit("alice"); !ok || err != nil {
			t.Fatal("alice refused after a release")
		} else {
			a.release()
		}
		// A reservation whose relay never comes expires.
		for i, want := range []bool{true, true, false} {
			if got := h("dave", "r", src); got != want {
				t.Fatalf("dave's reservation %d = %v: reservations not counted", i, got)
			}
		}
		time.Sleep(reservationTTL + time.Second)
		if !h("dave", "r", src) {
			t.Fatal("expired reservations still held")
		}
		a2.release()
		b1.release()
		time.Sleep(2 * reservationTTL)
		h("erin", "r", src) // sweeps
		q.mu.Lock()
		users := len(q.users)
		q.mu.Unlock()
		if st := q.Stats(); st.Allocations != 0 || users != 1 {
			t.Fatalf("after releases: %+v, %d user entries (want erin's only)", st, users)
		}
		// A nil Quota admits everything; an empty user (EVEN-PORT probe) is
		// not counted.
		var nq *Quota
		if !NewQuotaHandler(nq, nil)("x", "r", src) {
			t.Fatal("nil quota refused")
		}
		if a, err := q.acquire(""); a != nil || err != nil {
			t.Fatal("probe counted")
		}
	})
}

// TestQuotaBandwidth: a capped allocation's UDP relay drops datagrams over
// the cap in both directions and counts them; the user's cap is shared.
func TestQuotaBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := mustQuota(t, QuotaOptions{AllocationBandwidth: 10_000, UserBandwidth: 150_000})
		a, err := q.acquire("alice")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := q.acquire("alice")
		inner := &fakePacketConn{from: peer1, data: make([]byte, 1000)}
		pc := a.wrapWriter(a.wrapPacketConn(inner))
		// Writes: 10 kB/s with an 8 kB burst: 8 of 10 go through at once.
		passed := 0
		for range 10 {
			if a.allow(true, 1000) {
				passed++
			}
		}
		if passed != 8 {
			t.Fatalf("%d of 10 datagrams within the burst, want 8", passed)
		}
		if n, err := pc.WriteTo(make([]byte, 1000), peer1); n != 1000 || err != nil {
			t.Fatalf("dropped write reported %d, %v", n, err)
		}
		// The second allocation has its own 8 kB but shares alice's 15 kB
		// burst (150 kB/s), of which the first used 8.
		passed = 0
		for range 10 {
			if b.allow(true, 1000) {
				passed++
			}
		}
		if passed != 7 {
			t.Fatalf("second allocation passed %d, want the user's remaining 7", passed)
		}
		time.Sleep(time.Second)
		// Reads have their own buckets, full.
		buf := make([]byte, 2000)
		for range 5 {
			if n, _, err := pc.ReadFrom(buf); n != 1000 || err != nil {
				t.Fatalf("read %d, %v", n, err)
			}
		}
		st := q.Stats()
		if st.DroppedPackets != 2+1+3 || st.DroppedBytes != 6000 {
			t.Fatalf("stats %+v", st)
		}
		if err := pc.Close(); err != nil {
			t.Fatal(err)
		}
		if q.Stats().Allocations != 1 {
			t.Fatal("close did not uncount")
		}
	})
}

// TestQuotaShapesStreams: RFC 6062 peer connections are slowed, not cut.
func TestQuotaShapesStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := mustQuota(t, QuotaOptions{AllocationBandwidth: 10_000})
		a, _ := q.acquire("alice")
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		shaped := a.wrapConn(c1)
		go func() {
			buf := make([]byte, 4096)
			for {
				if _, err := c2.Read(buf); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		for range 28 {
			if _, err := shaped.Write(make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		// 28 kB at 10 kB/s with 8 kB free: 2 s.
		if took := time.Since(start); took < 1900*time.Millisecond || took > 2100*time.Millisecond {
			t.Fatalf("28 kB took %v at 10 kB/s", took)
		}
	})
}

// TestQuotaWithAllocator: PortAllocator counts relays through the Quota,
// refuses past the total cap with ErrCapacity, and shapes Connect
// connections of a counted TCP allocation.
func TestQuotaWithAllocator(t *testing.T) {
	q := mustQuota(t, QuotaOptions{TotalAllocations: 1, AllocationBandwidth: 1 << 20})
	pa, err := NewPortAllocator(PortAllocatorConfig{Bind4: lo4, Quota: q})
	if err != nil {
		t.Fatal(err)
	}
	pc, addr, err := pa.AllocatePacketConn(allocCfg("udp4", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pa.AllocateListener(allocCfg("tcp4", "bob")); !errors.Is(err, ErrCapacity) {
		t.Fatalf("second allocation: %v, want ErrCapacity", err)
	}
	// pion's EVEN-PORT probe (no user) is not counted.
	probe, _, err := pa.AllocatePacketConn(allocCfg("udp4", ""))
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	_ = probe.Close()
	if _, ok := pc.(*quotaWriter); !ok {
		t.Fatalf("relay socket is %T, want the bandwidth wrapper", pc)
	}
	if q.lookup(addr) == nil {
		t.Fatal("relay address not recorded")
	}
	_ = pc.Close()
	if q.Stats().Allocations != 0 || q.lookup(addr) != nil {
		t.Fatal("closing the relay did not uncount it")
	}
	ln, laddr, err := pa.AllocateListener(allocCfg("tcp4", "bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if q.lookup(laddr) == nil {
		t.Fatal("TCP relay address not recorded")
	}
}

func allocCfg(network, user string) turn.AllocateListenerConfig {
	return turn.AllocateListenerConfig{Network: network, UserID: user}
}

// TestQuotaPacketPathAllocatesNothing: the bandwidth check on every relayed
// datagram allocates nothing.
func TestQuotaPacketPathAllocatesNothing(t *testing.T) {
	q := mustQuota(t, QuotaOptions{AllocationBandwidth: 1 << 40, UserBandwidth: 1 << 40})
	a, err := q.acquire("alice")
	if err != nil {
		t.Fatal(err)
	}
	inner := &fakePacketConn{from: peer1, data: make([]byte, 1000)}
	pc := a.wrapWriter(a.wrapPacketConn(inner))
	buf := make([]byte, 1600)
	if n := testing.AllocsPerRun(1000, func() {
		if _, _, err := pc.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := pc.WriteTo(buf[:1000], peer1); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per datagram pair", n)
	}
}
