package rfc5780

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Socket roles: bit 0 set means the alternate IP, bit 1 the alternate port.
// A request received on role r with change flags c is answered from role
// r^c, and its OTHER-ADDRESS is role r^3.
const (
	rolePrimary = 0 // A1:P1
	roleIP      = 1 // A2:P1
	rolePort    = 2 // A1:P2
	roleBoth    = 3 // A2:P2
)

// readBufSize is the read buffer of an alternate socket: pion's InboundMTU.
const readBufSize = 1600

// Alternates are a listener's RFC 5780 alternate sockets, opened by the
// caller on the alternate IP A2 and alternate port P2 next to the primary
// A1:P1. Either all three are set or none.
type Alternates struct {
	// IP is bound to the alternate IP and the primary port, A2:P1.
	IP net.PacketConn
	// Port is bound to the primary IP and the alternate port, A1:P2.
	Port net.PacketConn
	// Both is bound to the alternate IP and the alternate port, A2:P2.
	Both net.PacketConn
}

// Close closes the sockets that are set. It is for callers that opened
// Alternates and cannot hand them to New.
func (a Alternates) Close() error {
	var errs []error
	for _, pc := range []net.PacketConn{a.IP, a.Port, a.Both} {
		if pc != nil {
			errs = append(errs, pc.Close())
		}
	}
	return errors.Join(errs...)
}

func (a Alternates) empty() bool { return a.IP == nil && a.Port == nil && a.Both == nil }

// Options configures a Responder.
type Options struct {
	// Alternates, if set, are the listener's alternate sockets. The
	// Responder owns them from New on (also when New fails) and closes them
	// in Close.
	Alternates Alternates
	// Software, if non-empty, is sent in a SOFTWARE attribute (cut to 763
	// bytes).
	Software string
	// Counters, if set, receives the counts; otherwise the Responder keeps
	// its own (see Counters).
	Counters *Counters
	// Log receives socket-level errors (never per packet); nil discards.
	Log *slog.Logger
}

// Responder answers Binding requests for one listener: on its primary
// sockets through Wrap, and on its alternate sockets itself.
type Responder struct {
	hasAlt   bool
	addrs    [4]netip.AddrPort // by role; only with alternates
	socks    [4]net.PacketConn // by role; [rolePrimary] unused, see primary
	primary  atomic.Pointer[sender]
	software []byte
	counters *Counters
	log      *slog.Logger
	bufs     sync.Pool // *[]byte response scratch

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// sender is a primary socket as seen below the wrapper.
type sender struct{ pc net.PacketConn }

// New returns a Responder and, with alternates, starts one goroutine per
// alternate socket answering the Binding requests that reach it. The
// alternate sockets must be bound to specific addresses of one family,
// A2:P1, A1:P2 and A2:P2, with A1 != A2 and P1 != P2.
func New(o Options) (*Responder, error) {
	r := &Responder{
		software: encodeSoftware(o.Software),
		counters: o.Counters,
		log:      o.Log,
	}
	if r.counters == nil {
		r.counters = &Counters{}
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.bufs.New = func() any {
		b := make([]byte, 0, 1024)
		return &b
	}
	if o.Alternates.empty() {
		return r, nil
	}
	if err := r.setAlternates(o.Alternates); err != nil {
		_ = o.Alternates.Close()
		return nil, err
	}
	for role := roleIP; role <= roleBoth; role++ {
		r.wg.Add(1)
		go r.serve(role, r.socks[role])
	}
	return r, nil
}

func (r *Responder) setAlternates(a Alternates) error {
	if a.IP == nil || a.Port == nil || a.Both == nil {
		return errors.New("rfc5780: alternates need all three sockets (A2:P1, A1:P2, A2:P2)")
	}
	r.socks = [4]net.PacketConn{nil, a.IP, a.Port, a.Both}
	for role := roleIP; role <= roleBoth; role++ {
		ap, ok := addrPort(r.socks[role].LocalAddr())
		if !ok || ap.Addr().IsUnspecified() || ap.Port() == 0 {
			return fmt.Errorf("rfc5780: alternate socket %v is not bound to a specific address and port", r.socks[role].LocalAddr())
		}
		r.addrs[role] = ap
	}
	ip, port, both := r.addrs[roleIP], r.addrs[rolePort], r.addrs[roleBoth]
	switch {
	case ip.Addr() != both.Addr():
		return fmt.Errorf("rfc5780: alternate sockets %s and %s must share the alternate IP", ip, both)
	case port.Port() != both.Port():
		return fmt.Errorf("rfc5780: alternate sockets %s and %s must share the alternate port", port, both)
	case port.Addr() == both.Addr():
		return fmt.Errorf("rfc5780: alternate IP %s equals the primary IP", both.Addr())
	case ip.Port() == both.Port():
		return fmt.Errorf("rfc5780: alternate port %d equals the primary port", both.Port())
	case port.Addr().Is4() != both.Addr().Is4():
		return fmt.Errorf("rfc5780: primary IP %s and alternate IP %s differ in family", port.Addr(), both.Addr())
	}
	r.addrs[rolePrimary] = netip.AddrPortFrom(port.Addr(), ip.Port())
	r.hasAlt = true
	return nil
}

// Counters returns the counters the Responder counts into.
func (r *Responder) Counters() *Counters { return r.counters }

// OtherAddress returns the listener's alternate address A2:P2, or the zero
// AddrPort without alternates.
func (r *Responder) OtherAddress() netip.AddrPort {
	if !r.hasAlt {
		return netip.AddrPort{}
	}
	return r.addrs[roleBoth]
}

// Close closes the alternate sockets and waits for their goroutines. The
// primary sockets belong to the wrappers (whoever closes those). It is safe
// to call more than once.
func (r *Responder) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		for _, pc := range r.socks {
			if pc != nil {
				errs = append(errs, pc.Close())
			}
		}
		r.wg.Wait()
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// serve answers Binding requests arriving on an alternate socket until it
// is closed.
func (r *Responder) serve(role int, pc net.PacketConn) {
	defer r.wg.Done()
	buf := make([]byte, readBufSize)
	local := r.addrs[role]
	logged := false
	for {
		n, src, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if !logged {
				r.log.Warn("rfc5780: read on alternate socket failed; retrying", "socket", local, "err", err)
				logged = true
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !isBindingRequest(buf[:n]) {
			r.counters.dropped.Add(1)
			continue
		}
		r.handle(role, pc, local, buf[:n], src)
	}
}

// handle answers one Binding request b from src that arrived on pc (role,
// bound to local).
func (r *Responder) handle(role int, pc net.PacketConn, local netip.AddrPort, b []byte, src net.Addr) {
	req, err := parseRequest(b)
	if err != nil {
		r.counters.dropped.Add(1)
		return
	}
	mapped, ok := addrPort(src)
	if !ok {
		r.counters.dropped.Add(1)
		return
	}
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	out := (*bp)[:0]
	from := pc
	switch {
	case req.hasChange && !r.hasAlt:
		req.addUnknown(attrChangeRequest)
		fallthrough
	case req.nUnknown > 0:
		out = appendError(out, &req.tid, 420, "Unknown Attribute", req.unknown[:req.nUnknown], r.software)
		r.counters.rejected.Add(1)
	case req.badChange:
		out = appendError(out, &req.tid, 400, "Bad Request", nil, r.software)
		r.counters.rejected.Add(1)
	default:
		s := success{mapped: mapped, origin: local}
		if r.hasAlt {
			to := role ^ changeRoles(req.change)
			s.origin = r.addrs[to]
			s.other = r.addrs[role^roleBoth]
			if to != role {
				from = r.socket(to)
				r.counters.changed.Add(1)
			}
		}
		if from == nil {
			r.counters.dropped.Add(1)
			return
		}
		out = appendSuccess(out, &req.tid, s, r.software)
		r.counters.answered.Add(1)
		if role != rolePrimary {
			r.counters.alternate.Add(1)
		}
	}
	*bp = out
	if _, err := from.WriteTo(out, src); err != nil {
		r.counters.dropped.Add(1)
	}
}

// changeRoles maps CHANGE-REQUEST flags to the role bits they flip.
func changeRoles(flags uint8) int {
	x := 0
	if flags&flagChangeIP != 0 {
		x |= roleIP
	}
	if flags&flagChangePort != 0 {
		x |= rolePort
	}
	return x
}

// socket returns the socket of role, the first wrapped primary for
// rolePrimary (nil before any Wrap).
func (r *Responder) socket(role int) net.PacketConn {
	if role != rolePrimary {
		return r.socks[role]
	}
	if s := r.primary.Load(); s != nil {
		return s.pc
	}
	return nil
}

// addrPort converts a UDP source address without allocating for
// *net.UDPAddr.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch v := a.(type) {
	case *net.UDPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	case nil:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
