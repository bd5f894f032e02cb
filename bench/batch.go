package bench

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// connectedUDP is a connected *net.UDPConn presented to x/net so that its
// batch I/O skips socket addresses. x/net's internal/socket classifies a
// conn with SetLinger as stream-like and then passes no msg_name to
// sendmmsg/recvmmsg; for a datagram conn it parses every received source
// address into a new *net.UDPAddr (two allocations per packet). A connected
// socket needs no addresses either way: the kernel fills in the peer on
// send and filters by it on receive. TestHotPathAllocs catches a change in
// x/net that would bring the allocations back.
type connectedUDP struct{ *net.UDPConn }

// SetLinger is the marker x/net looks for; it does nothing on UDP.
func (connectedUDP) SetLinger(int) error { return nil }

var errNoProgress = errors.New("sendmmsg sent nothing")

// timespecSize is the payload of an SCM_TIMESTAMPNS control message.
const timespecSize = int(unsafe.Sizeof(unix.Timespec{}))

// batchConn does sendmmsg/recvmmsg on a connected UDP socket through
// preallocated messages: bufs[i] is message i's buffer, sized for the
// largest datagram expected.
type batchConn struct {
	c    *net.UDPConn
	raw  syscall.RawConn
	pc   *ipv4.PacketConn
	bufs [][]byte
	in   []ipv4.Message // Buffers[0] is always the full bufs[i]
	out  []ipv4.Message // Buffers[0] is set per send

	// pending is what SIOCINQ reported in the last poll; inq is the bound
	// method value, so a poll allocates nothing.
	pending int32
	inq     func(fd uintptr)
}

func newBatchConn(c *net.UDPConn, batch, bufSize int) *batchConn {
	b := &batchConn{
		c:    c,
		pc:   ipv4.NewPacketConn(connectedUDP{c}),
		bufs: make([][]byte, batch),
		in:   make([]ipv4.Message, batch),
		out:  make([]ipv4.Message, batch),
	}
	b.raw, _ = c.SyscallConn() // cannot fail for an open *net.UDPConn
	b.inq = b.inqFD
	for i := range b.bufs {
		b.bufs[i] = make([]byte, bufSize)
		b.in[i].Buffers = [][]byte{b.bufs[i]}
		b.in[i].OOB = make([]byte, unix.CmsgSpace(timespecSize))
		b.out[i].Buffers = [][]byte{b.bufs[i]}
	}
	return b
}

// enableTimestamps asks the kernel to stamp every received datagram
// (SO_TIMESTAMPNS, CLOCK_REALTIME): round trips are then measured from
// arrival at the socket, without the generator's own wake-up latency.
func enableTimestamps(c *net.UDPConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_TIMESTAMPNS on %s: %w", c.LocalAddr(), serr)
	}
	return nil
}

// read receives up to len(bufs) datagrams, blocking until one arrives;
// datagram i is bufs[i][:in[i].N].
func (b *batchConn) read() (int, error) {
	n, err := b.pc.ReadBatch(b.in, 0)
	return max(n, 0), err // -1 with an error
}

// poll receives what is queued without blocking: SIOCINQ first, so an
// empty socket costs one ioctl and no allocation (x/net allocates the
// EAGAIN error of a MSG_DONTWAIT read).
func (b *batchConn) poll() (int, error) {
	b.pending = 0
	if err := b.raw.Control(b.inq); err != nil {
		return 0, err
	}
	if b.pending == 0 {
		return 0, nil
	}
	return b.read()
}

func (b *batchConn) inqFD(fd uintptr) {
	// SIOCINQ: the size of the next datagram, 0 when none is queued.
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&b.pending))); e != 0 {
		b.pending = 1 // let the read report the error
	}
}

// received returns datagram i of the last read.
func (b *batchConn) received(i int) []byte { return b.bufs[i][:b.in[i].N] }

// stamp returns the kernel receive time of datagram i of the last read, in
// ns since the Unix epoch, or 0 without one.
func (b *batchConn) stamp(i int) int64 {
	oob := b.in[i].OOB[:b.in[i].NN]
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && len(data) >= timespecSize {
			return (*unix.Timespec)(unsafe.Pointer(&data[0])).Nano()
		}
		oob = rest
	}
	return 0
}

// write sends bufs[i][:lens[i]] for i < len(lens), all of them unless an
// error stops it; it returns how many went out.
func (b *batchConn) write(lens []int) (int, error) {
	for i, l := range lens {
		b.out[i].Buffers[0] = b.bufs[i][:l]
	}
	sent := 0
	for sent < len(lens) {
		n, err := b.pc.WriteBatch(b.out[sent:len(lens)], 0)
		sent += max(n, 0) // -1 with an error
		if err != nil {
			return sent, err
		}
		if n == 0 {
			return sent, errNoProgress
		}
	}
	return sent, nil
}
