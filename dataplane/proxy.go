package dataplane

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferryrtc/ferry/internal/proxyproto"
)

// defaultProxyHeaderTimeout bounds the wait for a connection's PROXY
// protocol header unless Options.ProxyHeaderTimeout says otherwise.
const defaultProxyHeaderTimeout = 5 * time.Second

// Why a connection to a PROXY protocol listener was refused, in the order
// of proxyReasons.
const (
	proxyUntrusted = iota // the peer is not in proxy-protocol.trusted
	proxyMalformed        // not a version 2 header ferry accepts
	proxyTimeout          // no whole header within the header timeout
	numProxyReasons
)

var proxyReasons = [numProxyReasons]string{"untrusted", "malformed", "timeout"}

// proxyState is the server's PROXY protocol bookkeeping: the refusals,
// and the connections whose header is being read, which Close closes.
type proxyState struct {
	rejected [numProxyReasons]atomic.Uint64

	mu      sync.Mutex
	pending map[net.Conn]struct{}
	closed  bool // Close has run: no more admissions
}

// track records c as waiting for its header; false once Close has run.
func (p *proxyState) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.pending == nil {
		p.pending = map[net.Conn]struct{}{}
	}
	p.pending[c] = struct{}{}
	return true
}

// forget removes c from the connections waiting for their header.
func (p *proxyState) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.pending, c)
	p.mu.Unlock()
}

// closeAll closes every connection waiting for its header and refuses
// new ones.
func (p *proxyState) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for c := range p.pending {
		_ = c.Close()
	}
	p.pending = nil
}

// trustedProxy reports whether a PROXY protocol header from ip is believed.
func (s *Server) trustedProxy(ip netip.Addr) bool {
	for _, p := range s.opts.ProxyTrusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// admitProxied takes a connection accepted on a PROXY protocol listener.
// One from a peer that is not a trusted proxy is closed at once, unread;
// the header of any other is read in a goroutine of its own (the accept
// loop goes on), and the connection then served as the client the header
// names (its real peer for a LOCAL header), in TLS on a tls:// listener.
func (s *Server) admitProxied(c net.Conn, sl StreamListener) {
	peer := addrPortOf(c.RemoteAddr())
	if !s.trustedProxy(peer.Addr()) {
		s.proxy.rejected[proxyUntrusted].Add(1)
		s.log.Debug("PROXY protocol: connection from a peer outside proxy-protocol.trusted closed",
			"peer", peer.String(), "listener", sl.Listener.Addr().String())
		_ = c.Close()
		return
	}
	if !s.proxy.track(c) {
		_ = c.Close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.readProxyHeader(c, sl, peer)
	}()
}

// readProxyHeader reads c's PROXY protocol header and starts the
// connection, or closes it.
func (s *Server) readProxyHeader(c net.Conn, sl StreamListener, peer netip.AddrPort) {
	timeout := s.opts.ProxyHeaderTimeout
	if timeout <= 0 {
		timeout = defaultProxyHeaderTimeout
	}
	h, err := proxyproto.Read(c, timeout)
	if err != nil {
		switch proxyproto.Reason(err) {
		case "timeout":
			s.proxy.rejected[proxyTimeout].Add(1)
		case "malformed":
			s.proxy.rejected[proxyMalformed].Add(1)
		}
		s.log.Debug("PROXY protocol header refused; connection closed",
			"peer", peer.String(), "listener", sl.Listener.Addr().String(), "err", err)
		s.proxy.forget(c)
		_ = c.Close()
		return
	}
	remote := peer
	if h.Command == proxyproto.Proxy {
		remote = h.Source
	}
	var conn net.Conn = c
	if sl.TLS != nil {
		conn = tls.Server(c, sl.TLS)
	}
	// Under the lock, so that Close either closed c already or finds the
	// new stream on its loop.
	s.proxy.mu.Lock()
	defer s.proxy.mu.Unlock()
	if s.proxy.closed {
		_ = c.Close()
		return
	}
	delete(s.proxy.pending, c)
	s.startStream(conn, sl.Transport, remote)
}

// ProxyProtocolRejected returns the connections to PROXY protocol
// listeners refused so far, by reason: untrusted (the peer is not in
// proxy-protocol.trusted), malformed (no acceptable version 2 header),
// timeout (no whole header within 5 s). Every reason is present.
func (s *Server) ProxyProtocolRejected() map[string]uint64 {
	out := make(map[string]uint64, numProxyReasons)
	for i, r := range proxyReasons {
		out[r] = s.proxy.rejected[i].Load()
	}
	return out
}
