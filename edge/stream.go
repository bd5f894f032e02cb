package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/stun/v3"
)

var _ net.Conn = (*streamConn)(nil)

// handshaker is a conn with a deferred handshake: *tls.Conn, *dtls.Conn.
type handshaker interface {
	HandshakeContext(ctx context.Context) error
}

// isDatagramConn reports whether c delivers one datagram per Read (DTLS)
// rather than a byte stream.
func isDatagramConn(c net.Conn) bool {
	_, ok := c.(*dtls.Conn)
	return ok
}

// streamConn frames an accepted connection: each Read returns one whole
// STUN message or ChannelData frame (padded), which pion's STUNConn on top
// passes on unchanged. Read must not be called concurrently with itself;
// Write may be called concurrently with Read and with itself.
type streamConn struct {
	inner    net.Conn
	cfg      *config
	sh       *shard
	datagram bool // one datagram per inner Read (DTLS): malformed input is dropped, not fatal

	// Read side, owned by the reading goroutine.
	handshaken bool
	buf        []byte // mtu+4: a frame under mtu, or a datagram under mtu plus padding
	r, w       int    // buffered bytes are buf[r:w]
	fEnd       int    // end of the frame being delivered, 0 if none
	rerr       error  // once set, returned after the buffered frames

	idle      *time.Timer // nil if disabled
	framed    atomic.Bool // a complete frame reached pion
	idleFired atomic.Bool

	// raw is set once pion answered a ConnectionBind with success: the
	// connection then carries a peer's raw bytes (RFC 6062), which pass
	// through unframed and untouched.
	raw   atomic.Bool
	stale staleRing // requests whose stale nonce was stripped
	// tcpReq is the last Connect or ConnectionBind request passed to pion,
	// kept so its unsigned answer can be signed (Options.Sign).
	tcpReq atomic.Pointer[[]byte]

	closeOnce sync.Once
	closeErr  error
	onClose   func(*streamConn)
}

// newStreamConn wraps inner; onClose (may be nil) runs once when it
// closes. The idle guard starts here.
func newStreamConn(inner net.Conn, cfg *config, datagram bool, onClose func(*streamConn)) *streamConn {
	c := &streamConn{
		inner:    inner,
		cfg:      cfg,
		sh:       cfg.counters.shard(),
		datagram: datagram,
		buf:      make([]byte, cfg.mtu+4),
		onClose:  onClose,
	}
	if cfg.idle > 0 {
		c.idle = time.AfterFunc(cfg.idle, c.onIdle)
	}
	return c
}

// onIdle closes a connection that has not sent a complete frame. It runs
// on the timer's goroutine and does not touch c.idle.
func (c *streamConn) onIdle() {
	if c.framed.Load() {
		return
	}
	c.idleFired.Store(true)
	c.sh.idleClosed.Add(1)
	c.cfg.log.Debug("edge: closing idle connection", "client", c.inner.RemoteAddr(), "after", c.cfg.idle)
	_ = c.close()
}

// Read returns the next frame, or as much of it as fits in p (the rest on
// the following calls).
func (c *streamConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.raw.Load() {
		return c.readRaw(p)
	}
	if c.fEnd == 0 {
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.r:c.fEnd])
	c.r += n
	if c.r == c.fEnd {
		c.fEnd = 0
	}
	return n, nil
}

// readRaw reads a data connection: first what was buffered past the
// ConnectionBind request, then straight from the inner conn.
func (c *streamConn) readRaw(p []byte) (int, error) {
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	return c.inner.Read(p)
}

// nextFrame buffers the next frame to pass to pion at buf[r:fEnd].
func (c *streamConn) nextFrame() error {
	if !c.handshaken {
		if err := c.handshake(); err != nil {
			return err
		}
	}
	for {
		if c.r < c.w {
			var (
				size int
				in   info
				err  error
			)
			if c.datagram {
				size, in = c.parseDatagram()
			} else if size, in, err = c.parseStream(); err != nil {
				c.r, c.w = 0, 0
				c.rerr = err
				c.cfg.log.Debug("edge: closing connection", "client", c.inner.RemoteAddr(), "error", err)
				return err
			}
			if size > 0 {
				if in.kind == kindInvalid {
					c.r += size // a dropped frame, already counted
					continue
				}
				frame := c.buf[c.r : c.r+size]
				n, ok := c.pass(frame, in)
				if !ok {
					c.r += size // answered or dropped
					continue
				}
				if n < size {
					// Shortened in place (stale nonce): deliver its
					// head, moved up against the next frame.
					copy(c.buf[c.r+size-n:], frame[:n])
					c.r += size - n
				}
				c.fEnd = c.r + n
				return nil
			}
		}
		if c.rerr != nil {
			return c.rerr
		}
		c.fill()
	}
}

// parseStream parses the frame at buf[r:w] of a byte stream. size 0 means
// more bytes are needed; an error ends the connection.
func (c *streamConn) parseStream() (int, info, error) {
	b := c.buf[c.r:c.w]
	size, err := streamFrameSize(b, c.cfg.mtu)
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) {
			c.sh.oversized.Add(1)
		} else {
			c.sh.invalidFrames.Add(1)
		}
		return 0, info{}, err
	}
	if size == 0 {
		return 0, info{}, nil
	}
	if isChannelNumber(b[0]) {
		return size, info{kind: kindChannelData, dataLen: be16(b[2:4])}, nil
	}
	in := classifySTUN(b[:size])
	if in.kind == kindInvalid {
		// Framing is intact (the header was good), only the attributes
		// are not: drop this message, keep the connection.
		c.sh.malformed.Add(1)
	}
	return size, in, nil
}

// parseDatagram parses the frame at buf[r:w] of a datagram. ChannelData
// may come unpadded (as over UDP); it is padded here because pion's
// STUNConn expects stream framing. Anything else malformed drops the rest
// of the datagram (size 0, r = w).
func (c *streamConn) parseDatagram() (int, info) {
	b := c.buf[c.r:c.w]
	switch {
	case len(b) >= chanHeaderSize && isChannelNumber(b[0]):
		l := be16(b[2:4])
		if chanHeaderSize+l <= len(b) {
			size := chanHeaderSize + pad4(l)
			if size > len(b) {
				// Unpadded at the datagram's end; buf has room for the
				// padding (the datagram is under mtu, buf is mtu+4).
				clear(c.buf[c.w : c.r+size])
				c.w = c.r + size
			}
			return size, info{kind: kindChannelData, dataLen: l}
		}
	case len(b) >= stunHeaderSize && b[0]&0xC0 == 0:
		if size := stunHeaderSize + be16(b[2:4]); size <= len(b) {
			if in := classifySTUN(b[:size]); in.kind != kindInvalid {
				return size, in
			}
		}
	}
	c.sh.malformed.Add(1)
	c.r = c.w
	return 0, info{}
}

// fill reads more input into buf. Errors are kept in rerr.
func (c *streamConn) fill() {
	if c.datagram {
		c.r, c.w = 0, 0
		n, err := c.inner.Read(c.buf)
		if n >= c.cfg.mtu {
			c.sh.oversized.Add(1)
			n = 0
		}
		c.w = n
		c.setReadErr(err)
		return
	}
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	// A partial frame is under mtu bytes, so buf[w:] is never empty.
	n, err := c.inner.Read(c.buf[c.w:])
	c.w += n
	c.setReadErr(err)
}

func (c *streamConn) setReadErr(err error) {
	if err == nil {
		return
	}
	if c.idleFired.Load() {
		err = fmt.Errorf("%w: %w", ErrIdleTimeout, err)
	}
	c.rerr = err
}

// pass counts a frame and runs STUN requests through admit. It reports
// how much of the frame goes to pion, or false when it must not.
func (c *streamConn) pass(frame []byte, in info) (int, bool) {
	c.sh.countPassed(in)
	if !c.framed.Load() {
		c.framed.Store(true)
		if c.idle != nil {
			c.idle.Stop()
		}
	}
	if in.kind != kindRequest && in.kind != kindBindingRequest {
		return len(frame), true
	}
	n, reply, v := c.cfg.admit(frame, in, c.inner.RemoteAddr(), c.inner.LocalAddr(), c.sh, &c.stale)
	if v == admitPass && in.integrity && c.cfg.sign != nil && (in.typ == typeConnectReq || in.typ == typeConnBindReq) {
		req := bytes.Clone(frame[:n]) // rare: once per RFC 6062 connection
		c.tcpReq.Store(&req)
	}
	switch v {
	case admitDrop:
		return 0, false
	case admitReply:
		if _, err := c.Write(reply); err != nil {
			c.cfg.log.Debug("edge: send reply", "client", c.inner.RemoteAddr(), "error", err)
		}
		return 0, false
	}
	return n, true
}

// handshake runs a deferred TLS/DTLS handshake under the handshake timeout.
func (c *streamConn) handshake() error {
	c.handshaken = true
	h, ok := c.inner.(handshaker)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.handshake)
	defer cancel()
	if err := h.HandshakeContext(ctx); err != nil {
		c.sh.handshakeFailures.Add(1)
		c.cfg.log.Debug("edge: handshake failed", "client", c.inner.RemoteAddr(), "error", err)
		c.setReadErr(fmt.Errorf("edge: handshake with %s: %w", c.inner.RemoteAddr(), err))
		return c.rerr
	}
	return nil
}

// Write sends b, rewritten if it is a response ferry fixes up. It reports
// len(b) on success even when the rewritten message differs in length.
// After a successful ConnectionBind every byte passes untouched.
func (c *streamConn) Write(b []byte) (int, error) {
	if c.raw.Load() {
		return c.inner.Write(b)
	}
	if signed := c.signTCP(b); signed != nil {
		b = signed
	}
	o := outCtx{software: c.cfg.software, guard: c.cfg.guard, dst: ipOf(c.inner.RemoteAddr()), stale: &c.stale}
	p, act := planRewrite(b, o)
	if act != sendRewritten {
		// Streams are not spoofable: no amplification cap, nothing dropped.
		n, err := c.inner.Write(b)
		if err == nil && len(b) >= 2 && be16(b[0:2]) == typeConnBindOK && stun.IsMessage(b) {
			// pion starts copying peer bytes right after this answer.
			c.raw.Store(true)
			c.sh.connectionBinds.Add(1)
		}
		return n, err
	}
	bp := c.cfg.getBuf()
	out := appendRewritten((*bp)[:0], b, p, o)
	_, err := c.inner.Write(out)
	c.cfg.putBuf(bp, out)
	if err != nil {
		return 0, err
	}
	c.sh.countRewrite(p)
	return len(b), nil
}

// signTCP returns b signed when it is pion's unsigned answer to the last
// Connect or ConnectionBind request, else nil.
func (c *streamConn) signTCP(b []byte) []byte {
	if c.cfg.sign == nil || len(b) < stunHeaderSize {
		return nil
	}
	switch be16(b[0:2]) {
	case typeConnBindOK, typeConnBindErr, typeConnectErr:
	default:
		return nil
	}
	rp := c.tcpReq.Load()
	if rp == nil || !bytes.Equal((*rp)[8:stunHeaderSize], b[8:stunHeaderSize]) {
		return nil
	}
	c.tcpReq.CompareAndSwap(rp, nil)
	return c.cfg.sign(*rp, b)
}

// Close stops the idle guard and closes the inner conn. Later calls
// return the first result.
func (c *streamConn) Close() error {
	if c.idle != nil {
		c.idle.Stop()
	}
	return c.close()
}

func (c *streamConn) close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.inner.Close()
		if c.onClose != nil {
			c.onClose(c)
		}
	})
	return c.closeErr
}

// LocalAddr returns the inner conn's local address.
func (c *streamConn) LocalAddr() net.Addr { return c.inner.LocalAddr() }

// RemoteAddr returns the inner conn's remote address.
func (c *streamConn) RemoteAddr() net.Addr { return c.inner.RemoteAddr() }

// SetDeadline sets the inner conn's deadlines.
func (c *streamConn) SetDeadline(t time.Time) error { return c.inner.SetDeadline(t) }

// SetReadDeadline sets the inner conn's read deadline.
func (c *streamConn) SetReadDeadline(t time.Time) error { return c.inner.SetReadDeadline(t) }

// SetWriteDeadline sets the inner conn's write deadline.
func (c *streamConn) SetWriteDeadline(t time.Time) error { return c.inner.SetWriteDeadline(t) }

// Unwrap returns the inner conn (a *tls.Conn or *dtls.Conn for TLS and
// DTLS listeners), for callers that need its connection state.
func (c *streamConn) Unwrap() net.Conn { return c.inner }
