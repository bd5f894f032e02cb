package relay

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// fakePacketConn returns one fixed datagram per ReadFrom and accepts every
// WriteTo, without touching the network.
type fakePacketConn struct {
	from   *net.UDPAddr
	data   []byte
	closed bool
}

func (f *fakePacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if f.closed {
		return 0, nil, net.ErrClosed
	}
	return copy(p, f.data), f.from, nil
}
func (f *fakePacketConn) WriteTo(p []byte, _ net.Addr) (int, error) { return len(p), nil }
func (f *fakePacketConn) Close() error                              { f.closed = true; return nil }
func (f *fakePacketConn) LocalAddr() net.Addr                       { return f.from }
func (f *fakePacketConn) SetDeadline(time.Time) error               { return nil }
func (f *fakePacketConn) SetReadDeadline(time.Time) error           { return nil }
func (f *fakePacketConn) SetWriteDeadline(time.Time) error          { return nil }

var (
	relayA = net.UDPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.7:50000"))
	relayB = net.UDPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.7:50001"))
	relayT = net.TCPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.7:50000"))
	client = net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.1:4000"))
	server = net.UDPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:3478"))
	peer1  = net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.9:7000"))
)

// created announces an allocation on relay as pion's event would.
func created(tr *Tracker, relay net.Addr, user string) {
	tr.Events().OnAllocationCreated(client, server, "UDP", user, "ferry.test", relay, 0)
}

func TestTrackerCountsAndPermissions(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(tr *Tracker)
		from        *net.UDPAddr
		wantRelayed uint64
		wantDropped uint64
	}{
		{"no permission: dropped", func(*Tracker) {}, peer1, 0, 3},
		{"permission by IP, any port", func(tr *Tracker) {
			tr.Events().OnPermissionCreated(client, server, "UDP", "u", "r", relayA, net.ParseIP("198.51.100.9"))
		}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.9:1")), 3, 0},
		{"IPv4-mapped permission", func(tr *Tracker) {
			tr.Events().OnPermissionCreated(client, server, "UDP", "u", "r", relayA, net.ParseIP("::ffff:198.51.100.9"))
		}, peer1, 3, 0},
		{"permission deleted", func(tr *Tracker) {
			ev := tr.Events()
			ev.OnPermissionCreated(client, server, "UDP", "u", "r", relayA, net.ParseIP("198.51.100.9"))
			ev.OnPermissionDeleted(client, server, "UDP", "u", "r", relayA, net.ParseIP("198.51.100.9"))
		}, peer1, 0, 3},
		{"channel outlives its permission", func(tr *Tracker) {
			tr.Events().OnChannelCreated(client, server, "UDP", "u", "r", relayA, peer1, 0x4000)
		}, peer1, 3, 0},
		{"channel is per port", func(tr *Tracker) {
			tr.Events().OnChannelCreated(client, server, "UDP", "u", "r", relayA, peer1, 0x4000)
		}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.9:7001")), 0, 3},
		{"other allocation's permission", func(tr *Tracker) {
			tr.Events().OnPermissionCreated(client, server, "UDP", "u", "r", relayB, net.ParseIP("198.51.100.9"))
		}, peer1, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker(TrackerOptions{Log: testutil.Logger(t)})
			fake := &fakePacketConn{from: tt.from, data: []byte("12345")}
			pc := tr.WrapPacketConn(fake, relayA)
			_ = tr.WrapPacketConn(&fakePacketConn{from: peer1}, relayB)
			created(tr, relayA, "alice")
			tt.setup(tr)
			buf := make([]byte, 100)
			for range 3 {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					t.Fatal(err)
				}
			}
			for range 2 {
				if _, err := pc.WriteTo([]byte("abcdefg"), peer1); err != nil {
					t.Fatal(err)
				}
			}
			list := tr.List()
			if len(list) != 1 {
				t.Fatalf("List = %+v, want the one joined allocation", list)
			}
			a := list[0]
			if a.FromPeerPackets != tt.wantRelayed || a.FromPeerBytes != 5*tt.wantRelayed || a.DroppedPackets != tt.wantDropped {
				t.Errorf("from peer %d packets %d bytes, dropped %d; want %d, %d, %d",
					a.FromPeerPackets, a.FromPeerBytes, a.DroppedPackets, tt.wantRelayed, 5*tt.wantRelayed, tt.wantDropped)
			}
			if a.ToPeerPackets != 2 || a.ToPeerBytes != 14 {
				t.Errorf("to peer %d packets %d bytes, want 2, 14", a.ToPeerPackets, a.ToPeerBytes)
			}
			if a.User != "alice" || a.Client != client.String() || a.Relay != "203.0.113.7:50000" ||
				a.Transport != "udp" || a.RelayTransport != "udp" || a.Family != "ipv4" {
				t.Errorf("listed %+v", a)
			}
		})
	}
}

func TestTrackerCloseFoldsTotals(t *testing.T) {
	tr := NewTracker(TrackerOptions{})
	fa := &fakePacketConn{from: peer1, data: []byte("xyz")}
	pa := tr.WrapPacketConn(fa, relayA)
	fb := &fakePacketConn{from: peer1, data: []byte("xyz")}
	pb := tr.WrapPacketConn(fb, relayB)
	ft := &fakePacketConn{from: peer1}
	_ = tr.WrapPacketConn(ft, relayT) // a TCP key on the same address as relayA
	probe := tr.WrapPacketConn(&fakePacketConn{from: peer1}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.7:50002")))
	created(tr, relayA, "alice")
	created(tr, relayB, "bob")
	tr.Events().OnPermissionCreated(client, server, "UDP", "", "", relayA, peer1.IP)
	buf := make([]byte, 10)
	_, _, _ = pa.ReadFrom(buf)
	_, _ = pb.WriteTo([]byte("12"), peer1)
	_ = probe.Close() // an EVEN-PORT probe: never joined, never counted

	before := tr.Stats()
	if n, err := tr.Close(netip.MustParseAddrPort("203.0.113.7:50000"), TransportUDP); n != 1 || err != nil {
		t.Fatalf("Close = %d, %v", n, err)
	}
	if !fa.closed || ft.closed {
		t.Fatalf("closed udp socket %v, tcp socket %v: want only the UDP one", fa.closed, ft.closed)
	}
	if _, err := tr.Close(netip.MustParseAddrPort("203.0.113.7:50000"), ""); !errors.Is(err, ErrNoAllocation) {
		t.Fatalf("second Close: %v, want ErrNoAllocation (the TCP socket never joined)", err)
	}
	_ = pa.Close() // pion closes again: a no-op
	_ = pb.Close() // pion deletes bob's allocation itself
	after := tr.Stats()
	if after.Traffic != before.Traffic {
		t.Errorf("totals changed on close: %+v -> %+v", before.Traffic, after.Traffic)
	}
	if after.Traffic.FromPeerPackets != 1 || after.Traffic.ToPeerBytes != 2 {
		t.Errorf("totals %+v", after.Traffic)
	}
	if after.Ended[EndAdmin] != 1 || after.Ended[EndExpired] != 1 {
		t.Errorf("ended %v, want 1 admin, 1 expired", after.Ended)
	}
	c := Class{Transport: "udp", Family: "ipv4"}
	if before.Active[c] != 2 || after.Active[c] != 0 || after.Created[c] != 2 {
		t.Errorf("active %v -> %v, created %v", before.Active, after.Active, after.Created)
	}
	if got := tr.List(); len(got) != 0 {
		t.Errorf("List after close = %+v", got)
	}
}

func TestTrackerCloseUser(t *testing.T) {
	tr := NewTracker(TrackerOptions{})
	var fakes []*fakePacketConn
	for i, user := range []string{"alice", "bob", "alice"} {
		f := &fakePacketConn{from: peer1}
		fakes = append(fakes, f)
		relay := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("203.0.113.7"), uint16(50000+i)))
		_ = tr.WrapPacketConn(f, relay)
		created(tr, relay, user)
	}
	if n := tr.CloseUser("alice"); n != 2 {
		t.Fatalf("CloseUser = %d, want 2", n)
	}
	if !fakes[0].closed || fakes[1].closed || !fakes[2].closed {
		t.Fatalf("closed %v %v %v", fakes[0].closed, fakes[1].closed, fakes[2].closed)
	}
	if n := tr.CloseUser("nobody"); n != 0 {
		t.Fatalf("CloseUser(nobody) = %d", n)
	}
	if l := tr.List(); len(l) != 1 || l[0].User != "bob" {
		t.Fatalf("List = %+v", l)
	}
}

func TestNilTracker(t *testing.T) {
	var tr *Tracker
	f := &fakePacketConn{}
	if got := tr.WrapPacketConn(f, relayA); got != net.PacketConn(f) {
		t.Fatal("nil Tracker wrapped the socket")
	}
	if tr.List() != nil || tr.CloseUser("x") != 0 || tr.Events().OnAllocationCreated != nil {
		t.Fatal("nil Tracker is not inert")
	}
}

// TestTrackerPacketPathAllocs proves the per-packet path allocates nothing.
func TestTrackerPacketPathAllocs(t *testing.T) {
	tr := NewTracker(TrackerOptions{})
	pc := tr.WrapPacketConn(&fakePacketConn{from: peer1, data: make([]byte, 1200)}, relayA)
	created(tr, relayA, "alice")
	tr.Events().OnChannelCreated(client, server, "UDP", "", "", relayA, peer1, 0x4000)
	buf := make([]byte, 1600)
	if n := testing.AllocsPerRun(1000, func() {
		_, _, _ = pc.ReadFrom(buf)
		_, _ = pc.WriteTo(buf[:100], peer1)
	}); n != 0 {
		t.Fatalf("%v allocations per packet pair, want 0", n)
	}
}

// TestTrackerWithPion relays through pion's server with a tracked
// PortAllocator and closes the allocation from outside.
func TestTrackerWithPion(t *testing.T) {
	const realm, user, pass = "ferry.test", "alice", "secret"
	before := runtime.NumGoroutine()
	pionLog := testutil.PionLogger(t)
	tr := NewTracker(TrackerOptions{Log: testutil.Logger(t)})
	lo, hi := testutil.FreePortRange(t, lo4, 10)
	ports, err := NewPortAllocator(PortAllocatorConfig{Bind4: lo4, MinPort: lo, MaxPort: hi, Tracker: tr, Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var deleted sync.WaitGroup
	deleted.Add(1)
	ev := tr.Events()
	ev.OnAllocationDeleted = func(_, _ net.Addr, _, _, _ string) { deleted.Done() }
	srvConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         realm,
		LoggerFactory: pionLog,
		EventHandler:  ev,
		AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
			return user, turn.GenerateAuthKey(user, realm, pass), ra.Username == user
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: srvConn, RelayAddressGenerator: ports}},
	})
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = peer.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	clientConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: srvConn.LocalAddr().String(), TURNServerAddr: srvConn.LocalAddr().String(),
		Conn: clientConn, Username: user, Password: pass, Realm: realm, LoggerFactory: pionLog,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = relayConn.Close()
		client.Close()
		_ = clientConn.Close()
		_ = srv.Close()
		_ = peer.Close()
		testutil.CheckGoroutines(t, before)
	}()

	const n = 10
	var sent uint64
	buf := make([]byte, 1500)
	for i := range n {
		msg := make([]byte, 100+i)
		sent += uint64(len(msg))
		if _, err := relayConn.WriteTo(msg, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if m, _, err := relayConn.ReadFrom(buf); err != nil || m != len(msg) {
			t.Fatalf("echo %d: %d bytes, %v", i, m, err)
		}
	}
	list := tr.List()
	if len(list) != 1 {
		t.Fatalf("List = %+v", list)
	}
	a := list[0]
	want := Traffic{ToPeerPackets: n, ToPeerBytes: sent, FromPeerPackets: n, FromPeerBytes: sent}
	if a.Traffic != want || a.User != user || a.Client != clientConn.LocalAddr().String() {
		t.Fatalf("listed %+v, want traffic %+v for %s from %s", a, want, user, clientConn.LocalAddr())
	}
	if srv.AllocationCount() != 1 {
		t.Fatalf("pion has %d allocations", srv.AllocationCount())
	}
	if k, err := tr.Close(netip.MustParseAddrPort(a.Relay), ""); k != 1 || err != nil {
		t.Fatalf("Close = %d, %v", k, err)
	}
	deleted.Wait() // pion saw the closed socket and deleted the allocation
	if srv.AllocationCount() != 0 {
		t.Fatalf("pion still has %d allocations", srv.AllocationCount())
	}
	if s := tr.Stats(); s.Traffic != want || s.Ended[EndAdmin] != 1 {
		t.Fatalf("stats after close %+v", s)
	}
}
