package edge

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

var _ net.Listener = (*listener)(nil)

// Accept retry back-off on resource exhaustion (EMFILE and the like).
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// listener is the TCP/TLS/DTLS wrapper.
type listener struct {
	inner     net.Listener
	cfg       *config
	done      chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex // guards conns and closed; taken per connection, never per packet
	conns  map[*streamConn]struct{}
	closed bool
}

// WrapListener wraps a client-facing TCP, TLS or DTLS listener for pion's
// ListenerConfig. Accept never handshakes; each accepted conn frames the
// stream itself (one whole STUN or ChannelData frame per Read), handshakes
// lazily on its first Read, is closed if it sends no complete frame within
// the idle timeout, and applies the response fix-ups on Write. Accept
// retries, with back-off, errors that only mean the process is out of file
// descriptors or buffers, where pion would stop serving the listener.
// Close also closes every accepted connection still open (pion's
// Server.Close closes only the listener, leaving TCP clients and their read
// goroutines behind).
//
// pion reads TLS connection state only from a *tls.Conn, so behind this
// wrapper its AuthHandler sees RequestAttributes.TLS == nil; callers that
// need it reach the inner conn through Unwrap() net.Conn.
func WrapListener(l net.Listener, o Options) net.Listener {
	return &listener{
		inner: l,
		cfg:   newConfig(o),
		done:  make(chan struct{}),
		conns: make(map[*streamConn]struct{}),
	}
}

// Accept waits for the next connection and wraps it.
func (l *listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err == nil {
			return l.track(c)
		}
		if !retryableAcceptError(err) {
			return nil, err
		}
		if backoff == 0 {
			backoff = minAcceptBackoff
		} else {
			backoff = min(2*backoff, maxAcceptBackoff)
		}
		l.cfg.log.Warn("edge: accept failed, retrying", "listener", l.inner.Addr(), "error", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-l.done:
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// retryableAcceptError reports errors that end one Accept, not the
// listener.
func retryableAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// track wraps an accepted conn and registers it so Close can close it.
func (l *listener) track(inner net.Conn) (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = inner.Close()
		return nil, net.ErrClosed
	}
	c := newStreamConn(inner, l.cfg, isDatagramConn(inner), l.forget)
	l.conns[c] = struct{}{}
	return c, nil
}

func (l *listener) forget(c *streamConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// Close closes the wrapped listener and every accepted connection still
// open.
func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	err := l.inner.Close()
	l.mu.Lock()
	l.closed = true
	conns := make([]*streamConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	return err
}

// Addr returns the wrapped listener's address.
func (l *listener) Addr() net.Addr { return l.inner.Addr() }

// Unwrap returns the wrapped listener.
func (l *listener) Unwrap() net.Listener { return l.inner }
