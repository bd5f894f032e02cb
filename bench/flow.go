package bench

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// flow is one allocation in the hot loop: the client side (a connected UDP
// socket or the TCP control connection) sending ChannelData on
// benchChannel, and the echo peer (a UDP socket connected to the relayed
// address) sending every datagram back.
//
// Round trips are timed from the send stamp to the kernel's receive stamp
// on the client socket, minus the time the packet waited at the echo peer
// (kernel receive stamp to echo, written into the payload by the peer): the
// generator's own scheduling is not counted. Over TCP, and where the kernel
// gives no stamp, the time of the read stands in.
//
// Three ways to drive a flow: polled (one goroutine per group of flows
// sends, echoes and receives every tick, with non-blocking reads: the
// cheapest per packet at moderate rates), blocking rate mode (a sender
// goroutine, and a goroutine each blocked on the client and peer sockets),
// and max mode (one goroutine keeps a window outstanding, plus the echo
// goroutine). Counters are atomics updated once per batch.
type flow struct {
	sess    *session
	relayed netip.AddrPort
	size    int
	tcp     bool

	tx   *batchConn // udp: send side of the client socket
	rx   *batchConn // udp: receive side of the client socket
	peer *batchConn // echo peer, connected to relayed

	frameLen int   // wire length of one ChannelData
	txLens   []int // frameLen repeated, for tx.write
	tcpOut   []byte
	echoLens []int

	seq  uint64 // sender-owned: the next sequence number
	hist *histogram
	// hiSeq is one more than the highest sequence number that came back
	// (receiver-owned; max mode's window estimate).
	hiSeq uint64

	sent, received, peerRx atomic.Uint64
	invalid, other         atomic.Uint64
	sendErrs, peerErrs     atomic.Uint64
	lastErr                atomic.Pointer[error]
}

// batchFor sizes per-flow batches so that many flows stay within memory.
func batchFor(flows int) int {
	return max(8, min(maxBatch, 4096/flows))
}

func newFlow(sess *session, relayed netip.AddrPort, peer *net.UDPConn, size, batch int) *flow {
	f := &flow{
		sess:     sess,
		relayed:  relayed,
		size:     size,
		tcp:      sess.tcp,
		hist:     new(histogram),
		frameLen: channelFrameLen(size, sess.tcp),
		txLens:   make([]int, batch),
		echoLens: make([]int, batch),
	}
	for i := range f.txLens {
		f.txLens[i] = f.frameLen
	}
	_ = enableTimestamps(peer) // without: user-space times
	f.peer = newBatchConn(peer, batch, size+channelHeader+64)
	if f.tcp {
		f.tcpOut = make([]byte, batch*f.frameLen)
		for i := range batch {
			putChannelData(f.tcpOut[i*f.frameLen:], benchChannel, size, true)
		}
		return f
	}
	udp := sess.conn.(*net.UDPConn)
	_ = enableTimestamps(udp)
	f.tx = newBatchConn(udp, batch, f.frameLen)
	f.rx = newBatchConn(udp, batch, stunBufLen)
	for _, b := range f.tx.bufs {
		putChannelData(b, benchChannel, size, false)
	}
	return f
}

func (f *flow) batch() int { return len(f.txLens) }

func (f *flow) fail(counter *atomic.Uint64, err error) {
	counter.Add(1)
	f.lastErr.Store(&err)
}

// send sends n ChannelData messages stamped now.
func (f *flow) send(n int) {
	for n > 0 {
		k := min(n, f.batch())
		n -= k
		now := time.Now().UnixNano()
		var sent int
		var err error
		if f.tcp {
			for i := range k {
				putStamp(f.tcpOut[i*f.frameLen+channelHeader:], now, f.seq)
				f.seq++
			}
			var w int
			w, err = f.sess.conn.Write(f.tcpOut[:k*f.frameLen])
			sent = w / f.frameLen
		} else {
			for i := range k {
				putStamp(f.tx.bufs[i][channelHeader:], now, f.seq)
				f.seq++
			}
			sent, err = f.tx.write(f.txLens[:k])
		}
		f.sent.Add(uint64(sent))
		if err != nil {
			f.fail(&f.sendErrs, err)
			return
		}
	}
}

// recv blocks for one read (one recvmmsg, or one TCP read), records what
// arrived and returns how many of the generator's packets came back.
func (f *flow) recv() (int, error) {
	if f.tcp {
		if err := f.sess.frames.fill(); err != nil {
			return 0, err
		}
		now := time.Now().UnixNano()
		got := 0
		for {
			b, err := f.sess.frames.next()
			if err != nil {
				f.received.Add(uint64(got))
				return got, err
			}
			if b == nil {
				break
			}
			got += f.take(b, now)
		}
		f.received.Add(uint64(got))
		return got, nil
	}
	n, err := f.rx.read()
	if err != nil {
		return 0, err
	}
	return f.takeBatch(n), nil
}

// takeBatch records the n datagrams of the client socket's last read.
func (f *flow) takeBatch(n int) int {
	now := time.Now().UnixNano()
	got := 0
	for i := range n {
		at := f.rx.stamp(i)
		if at == 0 {
			at = now
		}
		got += f.take(f.rx.received(i), at)
	}
	f.received.Add(uint64(got))
	return got
}

// take records one frame from the server that arrived at at (ns since the
// epoch); it returns 1 for a returning packet of this run.
func (f *flow) take(b []byte, at int64) int {
	ch, data, ok := parseChannelData(b)
	if !ok {
		f.other.Add(1) // STUN (a late response), or junk
		return 0
	}
	if ch != benchChannel || len(data) != f.size {
		f.invalid.Add(1)
		return 0
	}
	sent, seq, hold, _ := readStamp(data)
	f.hist.record(time.Duration(at - sent - hold))
	f.hiSeq = max(f.hiSeq, seq+1)
	return 1
}

// echo sends back the n datagrams of the peer socket's last read, each
// stamped with how long it waited here.
func (f *flow) echo(n int) {
	f.peerRx.Add(uint64(n))
	lens := f.echoLens[:n]
	now := time.Now().UnixNano()
	for i := range lens {
		p := f.peer.received(i)
		lens[i] = len(p)
		if at := f.peer.stamp(i); at != 0 && len(p) >= stampSize {
			putHold(p, now-at)
		}
	}
	if _, err := f.peer.write(lens); err != nil {
		f.fail(&f.peerErrs, err)
	}
}

// echoOnce blocks for one read on the peer socket and echoes it.
func (f *flow) echoOnce() error {
	n, err := f.peer.read()
	if err != nil {
		return err
	}
	f.echo(n)
	return nil
}

// pollEcho echoes whatever waits on the peer socket, without blocking.
func (f *flow) pollEcho() {
	for {
		n, err := f.peer.poll()
		if err != nil {
			f.fail(&f.peerErrs, err)
			return
		}
		if n == 0 {
			return
		}
		f.echo(n)
		if n < f.batch() {
			return
		}
	}
}

// pollRecv records whatever waits on the client socket, without blocking
// (UDP only).
func (f *flow) pollRecv() {
	for {
		n, err := f.rx.poll()
		if err != nil {
			f.fail(&f.sendErrs, err)
			return
		}
		if n == 0 {
			return
		}
		f.takeBatch(n)
		if n < f.batch() {
			return
		}
	}
}

// runEcho echoes until done is set (the caller then expires the socket's
// read deadline to wake it; the deadline must be clear before).
func (f *flow) runEcho(done *atomic.Bool) {
	for !done.Load() {
		if err := f.echoOnce(); err != nil && !done.Load() {
			f.fail(&f.peerErrs, err)
			time.Sleep(time.Millisecond) // e.g. ICMP refused: do not spin
		}
	}
}

// runRecv receives until done is set.
func (f *flow) runRecv(done *atomic.Bool) {
	for !done.Load() {
		if _, err := f.recv(); err != nil && !done.Load() {
			f.fail(&f.sendErrs, err)
			time.Sleep(time.Millisecond)
		}
	}
}

// maxIdle is how long a max-mode flow waits with nothing coming back before
// it takes its window as lost and sends a new one.
const maxIdle = 200 * time.Millisecond

// runWindow keeps window packets in flight until stop is set or limit (if
// positive) packets were sent; it returns when done is set. In flight are
// the packets sent after the highest sequence number that came back, so a
// lost packet is replaced as soon as a later one returns (loopback does not
// reorder); when nothing comes back for maxIdle, the window starts over.
func (f *flow) runWindow(window int, limit uint64, stop, done *atomic.Bool, sending *sync.WaitGroup) {
	active := true
	defer func() {
		if active {
			sending.Done()
		}
	}()
	budget := func(n int) int {
		if stop.Load() {
			return 0
		}
		if limit > 0 {
			left := limit - min(limit, f.sent.Load())
			n = int(min(uint64(n), left))
		}
		return n
	}
	conn := f.sess.conn
	f.send(budget(window))
	lastRx := time.Now()
	for !done.Load() {
		if active && stop.Load() {
			active = false // budget is 0 from here on
			sending.Done()
		}
		now := time.Now()
		_ = conn.SetReadDeadline(now.Add(50 * time.Millisecond))
		got, err := f.recv()
		if done.Load() {
			return
		}
		if err != nil && !isTimeout(err) {
			f.fail(&f.sendErrs, err)
			time.Sleep(time.Millisecond)
		}
		if got > 0 {
			lastRx = now
			if inFlight := int(f.seq - min(f.seq, f.hiSeq)); inFlight < window {
				f.send(budget(window - inFlight))
			}
			continue
		}
		if time.Since(lastRx) > maxIdle {
			lastRx = time.Now()
			f.send(budget(window))
		}
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// wake makes blocked reads on the flow's sockets return now.
func (f *flow) wake() {
	past := time.Unix(1, 0)
	_ = f.sess.conn.SetReadDeadline(past)
	_ = f.peer.c.SetReadDeadline(past)
}

// close releases the sockets (not the allocation).
func (f *flow) close() {
	_ = f.sess.close()
	_ = f.peer.c.Close()
}
