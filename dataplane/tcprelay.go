package dataplane

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/internal/sockopt"
)

// RFC 6062 TCP relays.

// connectTimeout bounds a Connect's dial (RFC 6062 §5.2 asks for at
// least 30 s before giving up).
const connectTimeout = 30 * time.Second

// peerConn is a peer TCP connection, waiting for its ConnectionBind or
// joined to a client data connection.
type peerConn struct {
	conn net.Conn
}

// acceptPeers accepts peer connections on a TCP relay listener until it
// closes, and lets the relay's loop decide on each.
func (s *Server) acceptPeers(l *loop, relay engine.RelayID, ln *net.TCPListener) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if !l.box.post(msg{kind: msgPeerAccepted, relay: relay, conn: c, peer: addrPortOf(c.RemoteAddr())}) {
				_ = c.Close()
				return
			}
		}
	}()
}

// dial carries out OpConnectPeer: a TCP connection to the peer from the
// relay's address.
func (s *Server) dial(l *loop, c *engine.Command) {
	idx := c.Relay.Index()
	if idx >= len(l.relays) || l.relays[idx].tcp == nil {
		l.box.post(msg{kind: msgPeerConnected, id: c.Conn, err: errors.New("no TCP relay")})
		return
	}
	local := l.relays[idx].addr
	peer, id := c.Peer, c.Conn
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		d := net.Dialer{Timeout: connectTimeout, LocalAddr: net.TCPAddrFromAddrPort(local), Control: sockopt.ReuseAddrPort}
		conn, err := d.Dial("tcp", peer.String())
		if !l.box.post(msg{kind: msgPeerConnected, id: id, conn: conn, err: err}) && conn != nil {
			_ = conn.Close()
		}
	}()
}

// addPeer keeps a peer connection under its CONNECTION-ID.
func (s *Server) addPeer(id uint32, c net.Conn) {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	if s.closing.Load() {
		_ = c.Close()
		return
	}
	s.peers[id] = &peerConn{conn: c}
}

// closePeer closes and forgets a peer connection.
func (s *Server) closePeer(id uint32) {
	s.peersMu.Lock()
	p := s.peers[id]
	delete(s.peers, id)
	s.peersMu.Unlock()
	if p != nil {
		_ = p.conn.Close()
	}
}

// join hands a peer connection to the client data connection whose
// ConnectionBind the engine accepted.
func (s *Server) join(sc *streamConn, id uint32, j *engine.Join) {
	s.peersMu.Lock()
	p := s.peers[id]
	s.peersMu.Unlock()
	if p == nil || !sc.pendingBind.CompareAndSwap(true, false) {
		sc.close()
		return
	}
	sc.joinCh <- joinVerdict{peer: p, join: j, id: id}
}

// relayData copies bytes both ways between a client data connection and
// its peer connection until either ends; rest are the client's bytes read
// past its ConnectionBind. It runs on the connection's reader goroutine.
func (s *Server) relayData(sc *streamConn, rest []byte, v joinVerdict) {
	peer := v.peer.conn
	defer func() {
		_ = peer.Close()
		sc.close()
		if l := s.loops[int(v.id>>24)%len(s.loops)]; l != nil {
			l.box.post(msg{kind: msgPeerClosed, id: v.id})
		}
		s.peersMu.Lock()
		delete(s.peers, v.id)
		s.peersMu.Unlock()
	}()
	if !sc.drainWrites() {
		return
	}
	done := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(done)
		pump(sc.conn, peer, nil, false, v.join)
		_ = sc.conn.Close()
	}()
	pump(peer, sc.conn, rest, true, v.join)
	_ = peer.Close()
	<-done
}

// pump copies from src to dst (first pre, bytes already read), counting
// and pacing them in direction toPeer.
func pump(dst io.Writer, src io.Reader, pre []byte, toPeer bool, j *engine.Join) {
	buf := make([]byte, 16<<10)
	write := func(b []byte) bool {
		if j != nil && j.Shaper != nil {
			if d := j.Shaper.Delay(toPeer, len(b), time.Now()); d > 0 {
				time.Sleep(d)
			}
		}
		if _, err := dst.Write(b); err != nil {
			return false
		}
		if j != nil && j.Traffic != nil {
			j.Traffic.Count(toPeer, len(b))
		}
		return true
	}
	if len(pre) > 0 && !write(pre) {
		return
	}
	for {
		n, err := src.Read(buf)
		if n > 0 && !write(buf[:n]) {
			return
		}
		if err != nil {
			return
		}
	}
}
