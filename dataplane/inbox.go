package dataplane

import (
	"net"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/engine"
)

type msgKind uint8

const (
	msgFrame              msgKind = iota + 1 // a frame from a client connection
	msgStreamOpened                          // a client connection was accepted
	msgStreamClosed                          // a client connection ended
	msgCall                                  // run fn on the loop
	msgGiveRelay                             // hand relay old to loop to as new
	msgTakeRelay                             // take over a relay socket as new
	msgPeerAccepted                          // an RFC 6062 relay listener accepted a peer
	msgPeerConnected                         // an RFC 6062 dial ended
	msgPeerClosed                            // an RFC 6062 peer connection ended
	msgConnectionBindDone                    // a ConnectionBind frame was handled without a join
)

// msg is one item of a loop's inbox.
type msg struct {
	kind  msgKind
	sc    *streamConn
	frame *[]byte
	n     int
	fn    func(*loop)
	done  chan struct{}
	old   engine.RelayID
	relay engine.RelayID
	to    *loop
	sock  relaySock
	conn  net.Conn
	peer  netip.AddrPort
	id    uint32
	err   error
}

// inbox passes work to a loop from other goroutines: a queue under a
// mutex and an eventfd in the loop's epoll set, written only when the
// queue goes from empty to not empty.
type inbox struct {
	fd     int
	mu     sync.Mutex
	q      []msg
	woken  bool
	closed bool // the loop has ended: posts are dropped, the eventfd is gone
}

func newInbox() (*inbox, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return &inbox{fd: fd}, nil
}

// post queues m and wakes the loop. It reports false when the loop has
// ended.
func (b *inbox) post(m msg) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.q = append(b.q, m)
	if !b.woken {
		b.woken = true
		one := uint64(1)
		_, _ = unix.Write(b.fd, (*[8]byte)(unsafe.Pointer(&one))[:])
	}
	return true
}

// close ends the inbox and closes its eventfd.
func (b *inbox) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		_ = unix.Close(b.fd)
	}
}

// take returns the queued messages, swapping in spare (emptied) as the new
// queue.
func (b *inbox) take(spare []msg) []msg {
	var v [8]byte
	_, _ = unix.Read(b.fd, v[:])
	b.mu.Lock()
	q := b.q
	b.q = spare[:0]
	b.woken = false
	b.mu.Unlock()
	return q
}
