package rfc5780

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// listenUDP opens a socket on addr ("127.0.0.1:0") closed at cleanup.
func listenUDP(t *testing.T, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

func localAP(t *testing.T, pc net.PacketConn) netip.AddrPort {
	t.Helper()
	ap, ok := addrPort(pc.LocalAddr())
	if !ok {
		t.Fatalf("local address %v", pc.LocalAddr())
	}
	return ap
}

// fakePion reads the wrapped conn like pion's read loop and hands on what
// it returns.
type fakePion struct {
	got  chan []byte
	done chan struct{}
}

func runFakePion(t *testing.T, pc net.PacketConn) *fakePion {
	t.Helper()
	f := &fakePion{got: make(chan []byte, 16), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		buf := make([]byte, 1600)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			f.got <- append([]byte(nil), buf[:n]...)
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-f.done
	})
	return f
}

// lab is a primary socket with alternates on 127.0.0.1/127.0.0.2.
type lab struct {
	r       *Responder
	pion    *fakePion
	addrs   [4]netip.AddrPort
	counter *Counters
}

func newLab(t *testing.T, withAlt bool, software string) *lab {
	t.Helper()
	primary := listenUDP(t, "127.0.0.1:0")
	l := &lab{counter: &Counters{}}
	l.addrs[rolePrimary] = localAP(t, primary)
	o := Options{Software: software, Counters: l.counter, Log: testutil.Logger(t)}
	if withAlt {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		alt, err := ListenAlternates(ctx, l.addrs[rolePrimary], netip.MustParseAddr("127.0.0.2"), 0)
		if err != nil {
			t.Fatal(err)
		}
		o.Alternates = alt
		l.addrs[roleIP] = localAP(t, alt.IP)
		l.addrs[rolePort] = localAP(t, alt.Port)
		l.addrs[roleBoth] = localAP(t, alt.Both)
	}
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	l.r = r
	l.pion = runFakePion(t, r.Wrap(primary))
	return l
}

// exchange sends b from client to dst and returns the first reply and
// where it came from, or nil after timeout.
func exchange(t *testing.T, client net.PacketConn, dst netip.AddrPort, b []byte, timeout time.Duration) ([]byte, netip.AddrPort) {
	t.Helper()
	if _, err := client.WriteTo(b, net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 1600)
	n, from, err := client.ReadFrom(buf)
	if err != nil {
		return nil, netip.AddrPort{}
	}
	ap, _ := addrPort(from)
	return buf[:n], ap
}

// bindingRequest builds a Binding request with extra attributes.
func bindingRequest(t testing.TB, extra ...stun.Setter) []byte {
	t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, extra...)
	setters = append(setters, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func changeRequest(flags byte) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, flags}}
}

// decoded is a parsed response.
type decoded struct {
	msg                     *stun.Message
	xorMapped, mapped       netip.AddrPort
	origin, other           netip.AddrPort
	software                string
	code                    int
	unknown                 []stun.AttrType
	hasOrigin, hasOther     bool
	fingerprintOK, hasError bool
}

func decode(t testing.TB, b []byte) decoded {
	t.Helper()
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		t.Fatalf("decode response: %v", err)
	}
	d := decoded{msg: m}
	d.fingerprintOK = stun.Fingerprint.Check(m) == nil
	var xa stun.XORMappedAddress
	if xa.GetFrom(m) == nil {
		d.xorMapped = toAP(xa.IP, xa.Port)
	}
	var ma stun.MappedAddress
	if ma.GetFrom(m) == nil {
		d.mapped = toAP(ma.IP, ma.Port)
	}
	var ro stun.ResponseOrigin
	if ro.GetFrom(m) == nil {
		d.origin, d.hasOrigin = toAP(ro.IP, ro.Port), true
	}
	var oa stun.OtherAddress
	if oa.GetFrom(m) == nil {
		d.other, d.hasOther = toAP(oa.IP, oa.Port), true
	}
	var sw stun.Software
	if sw.GetFrom(m) == nil {
		d.software = sw.String()
	}
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) == nil {
		d.code, d.hasError = int(ec.Code), true
	}
	var ua stun.UnknownAttributes
	if ua.GetFrom(m) == nil {
		d.unknown = ua
	}
	return d
}

func toAP(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}
