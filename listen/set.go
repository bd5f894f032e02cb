package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"

	"github.com/ferryrtc/ferry/config"
)

// Stream is an opened TCP, TLS or DTLS listener.
type Stream struct {
	Listener  net.Listener
	Transport config.Transport
	// ProxyProtocol: every connection starts with a PROXY protocol v2
	// header, to be read before anything else.
	ProxyProtocol bool
	// TLS is set on a tls:// listener with ProxyProtocol: Listener is then
	// the plain TCP listener, since the header comes before the TLS
	// handshake, and each connection is wrapped in TLS with this
	// configuration once the header is read. Otherwise a tls:// Listener
	// does TLS itself.
	TLS *tls.Config
}

// Set is every client-facing socket of a server.
type Set struct {
	// UDP has one SO_REUSEPORT set per UDP listener address.
	UDP [][]UDPSocket
	// Stream are the TCP, TLS and DTLS listeners.
	Stream []Stream
}

// Close closes every socket of the set.
func (s Set) Close() {
	for _, set := range s.UDP {
		for _, u := range set {
			_ = u.Close()
		}
	}
	for _, st := range s.Stream {
		_ = st.Listener.Close()
	}
}

// Open opens every listener of ls for the data plane: n UDP sockets per
// UDP address (UDPSet), and the stream listeners. skip decides whether a
// listener that cannot be opened is left out (with the error) rather than
// failing the whole set; it may be nil. It returns the listeners as bound
// (real ports when 0 was asked for). On error every socket opened is
// closed.
func Open(ctx context.Context, ls []config.Listener, certs *Certs, n int, skip func(config.Listener, error) bool) (Set, []config.Listener, error) {
	var s Set
	var bound []config.Listener
	for _, l := range ls {
		var addr netip.AddrPort
		var err error
		switch l.Transport {
		case config.UDP:
			var set []UDPSocket
			if set, err = UDPSet(l, n); err == nil {
				s.UDP = append(s.UDP, set)
				addr = set[0].Addr
			}
		default:
			var ln net.Listener
			var tlsConf *tls.Config
			switch {
			case l.Transport == config.TCP:
				ln, err = TCP(ctx, l)
			case l.Transport == config.TLSt && l.ProxyProtocol:
				ln, err = TCP(ctx, l)
				tlsConf = certs.TLSConfig()
			case l.Transport == config.TLSt:
				ln, err = TLS(ctx, l, certs)
			case l.Transport == config.DTLS:
				ln, err = DTLS(l, certs)
			}
			if err == nil {
				s.Stream = append(s.Stream, Stream{Listener: ln, Transport: l.Transport, ProxyProtocol: l.ProxyProtocol, TLS: tlsConf})
				addr, _ = netip.ParseAddrPort(ln.Addr().String())
			}
		}
		if err != nil {
			if skip != nil && skip(l, err) {
				continue
			}
			s.Close()
			return Set{}, nil, err
		}
		b := l
		b.Addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
		bound = append(bound, b)
	}
	if len(bound) == 0 {
		return Set{}, nil, errors.New("no listener could be opened")
	}
	return s, bound, nil
}
