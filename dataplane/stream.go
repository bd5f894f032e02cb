package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/internal/stunwire"
)

// Stream connection limits.
const (
	maxFrame      = stunwire.HeaderSize + 0xFFFF + 3 // the largest STUN or padded ChannelData frame
	frameCredits  = 64                               // frames of one connection in a loop's inbox at once
	writeQueueLen = 256                              // frames queued to one client connection
)

// bufPool recycles frame buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getBuf(n int) *[]byte {
	b := bufPool.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return b
}

func putBuf(b *[]byte) {
	if cap(*b) <= 4096 {
		bufPool.Put(b)
	}
}

// joinVerdict tells a reader blocked after a ConnectionBind whether its
// connection now carries a peer's bytes.
type joinVerdict struct {
	peer *peerConn
	join *engine.Join
	id   uint32
}

// streamConn is a TCP, TLS or DTLS client connection.
type streamConn struct {
	srv      *Server
	id       engine.SocketID
	conn     net.Conn
	client   engine.Client
	datagram bool // DTLS: one frame per read
	owner    atomic.Pointer[loop]

	tx      chan *[]byte
	credits chan struct{}
	// pendingBind is set while a ConnectionBind frame is with the loop;
	// the reader waits on joinCh for the verdict.
	pendingBind atomic.Bool
	joinCh      chan joinVerdict

	flushed chan struct{} // closed by the writer when it reaches a nil in tx

	closeOnce sync.Once
	done      chan struct{}
}

// accept serves one listener until it closes.
func (s *Server) accept(sl StreamListener) {
	for {
		c, err := sl.Listener.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept", "listener", sl.Listener.Addr().String(), "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if sl.ProxyProtocol {
			s.admitProxied(c, sl) // the header is read in a goroutine of its own
			continue
		}
		s.startStream(c, sl.Transport, addrPortOf(c.RemoteAddr()))
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// startStream registers a new client connection from remote (its peer, or
// the client a trusted proxy's PROXY protocol header names) with a loop and
// starts its goroutines.
func (s *Server) startStream(c net.Conn, t engine.Transport, remote netip.AddrPort) {
	id := engine.SocketID(streamIDBase | s.nextConn.Add(1)&(streamIDBase-1))
	sc := &streamConn{
		srv:  s,
		id:   id,
		conn: c,
		client: engine.Client{Transport: t, Socket: id,
			Local: addrPortOf(c.LocalAddr()), Remote: remote},
		datagram: t == engine.DTLS,
		tx:       make(chan *[]byte, writeQueueLen),
		credits:  make(chan struct{}, frameCredits),
		joinCh:   make(chan joinVerdict, 1),
		flushed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	l := s.loops[loopFor(sc.client.Remote, len(s.loops))]
	sc.owner.Store(l)
	if !l.box.post(msg{kind: msgStreamOpened, sc: sc}) {
		_ = c.Close()
		return
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		sc.read()
	}()
	go func() {
		defer s.wg.Done()
		sc.writeLoop()
	}()
}

// loopFor picks a loop for a client connection by its address.
func loopFor(ap netip.AddrPort, n int) int {
	b := ap.Addr().As16()
	h := binary.BigEndian.Uint64(b[8:]) ^ uint64(ap.Port())*0x9E3779B97F4A7C15
	return int(h % uint64(n))
}

// close closes the connection once.
func (sc *streamConn) close() {
	sc.closeOnce.Do(func() {
		close(sc.done)
		_ = sc.conn.Close()
	})
}

// credit returns a frame credit (the loop has handled a frame).
func (sc *streamConn) credit() {
	select {
	case <-sc.credits:
	default:
	}
}

// post hands a frame to the connection's loop, waiting for a credit.
func (sc *streamConn) post(frame []byte) bool {
	select {
	case sc.credits <- struct{}{}:
	case <-sc.done:
		return false
	}
	b := getBuf(len(frame))
	copy(*b, frame)
	return sc.owner.Load().box.post(msg{kind: msgFrame, sc: sc, frame: b, n: len(frame)})
}

// handshaker is a connection with an explicit handshake.
type handshaker interface {
	HandshakeContext(ctx context.Context) error
}

// read is the reader goroutine: handshake, then frames to the loop until
// the connection ends or is joined to a peer (RFC 6062).
func (sc *streamConn) read() {
	defer func() {
		sc.close()
		if l := sc.owner.Load(); l != nil {
			l.box.post(msg{kind: msgStreamClosed, sc: sc})
		}
	}()
	if h, ok := sc.conn.(handshaker); ok {
		ctx, cancel := context.WithTimeout(context.Background(), sc.srv.opts.HandshakeTimeout)
		err := h.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return
		}
	}
	if sc.datagram {
		sc.readDatagrams()
		return
	}
	buf := make([]byte, 4096)
	r, w := 0, 0
	for {
		n, need, ok := stunwire.StreamFrameLen(buf[r:w])
		if !ok || n > maxFrame {
			sc.srv.counters.invalidFrame.Add(1)
			return
		}
		if need || w-r < n {
			if r > 0 {
				w = copy(buf, buf[r:w])
				r = 0
			}
			if !need && n > len(buf) {
				nb := make([]byte, n)
				copy(nb, buf[:w])
				buf = nb
			}
			k, err := sc.conn.Read(buf[w:])
			if k == 0 && err != nil {
				return
			}
			w += k
			continue
		}
		frame := buf[r : r+n]
		r += n
		bind := isConnectionBind(frame)
		if bind {
			sc.pendingBind.Store(true)
		}
		if !sc.post(frame) {
			return
		}
		if bind {
			v := <-sc.joinCh
			if v.peer != nil {
				sc.srv.relayData(sc, buf[r:w], v)
				return
			}
		}
	}
}

// readDatagrams reads a DTLS connection: each record is one frame.
func (sc *streamConn) readDatagrams() {
	buf := make([]byte, maxFrame)
	for {
		n, err := sc.conn.Read(buf)
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				continue
			}
			return
		}
		if stunwire.Classify(buf[:n]) == stunwire.KindOther {
			sc.srv.counters.invalidFrame.Add(1)
			continue
		}
		if !sc.post(buf[:n]) {
			return
		}
	}
}

// isConnectionBind reports whether a frame is an RFC 6062 ConnectionBind
// request, after which the connection may carry raw bytes.
func isConnectionBind(frame []byte) bool {
	return len(frame) >= stunwire.HeaderSize &&
		binary.BigEndian.Uint16(frame) == stun.NewType(stun.MethodConnectionBind, stun.ClassRequest).Value()
}

// write queues a frame for the writer goroutine; when the queue is full
// the frame is dropped (the client reads too slowly).
func (sc *streamConn) write(data []byte) {
	b := getBuf(len(data))
	copy(*b, data)
	select {
	case sc.tx <- b:
	default:
		putBuf(b)
		sc.srv.counters.streamDrops.Add(1)
	}
}

// writeLoop writes queued frames until the connection closes.
func (sc *streamConn) writeLoop() {
	for {
		select {
		case b := <-sc.tx:
			if b == nil {
				close(sc.flushed)
				return // joined: the copy goroutines write from now on
			}
			_, err := sc.conn.Write(*b)
			putBuf(b)
			if err != nil {
				sc.close()
				return
			}
		case <-sc.done:
			return
		}
	}
}

// drainWrites waits until the writer goroutine has written everything
// queued before (the ConnectionBind answer) and has stopped.
func (sc *streamConn) drainWrites() bool {
	select {
	case sc.tx <- nil:
	case <-sc.done:
		return false
	}
	select {
	case <-sc.flushed:
		return true
	case <-sc.done:
		return false
	}
}
