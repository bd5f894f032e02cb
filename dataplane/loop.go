package dataplane

import (
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ferryrtc/ferry/engine"
)

// Sizes of a loop's batches.
const (
	batchSize  = 64   // datagrams per recvmmsg and per sendmmsg
	datagramRx = 2048 // largest datagram read; larger ones are dropped (MSG_TRUNC)
	maxEvents  = 128
	tickEvery  = time.Second
)

// Kinds of descriptors in a loop's epoll set (EpollEvent.Fd holds the kind,
// EpollEvent.Pad the index).
const (
	evListener int32 = iota + 1
	evRelay
	evInbox
	evTimer
)

// udpSock is a client-facing UDP socket: a listener or an RFC 5780
// alternate.
type udpSock struct {
	fd   int
	id   engine.SocketID
	addr netip.AddrPort
	info bool // wildcard: PKTINFO on and off the wire
	v6   bool
}

// relaySock is one relay socket of a loop.
type relaySock struct {
	fd   int // UDP; -1 for a TCP listener
	v6   bool
	addr netip.AddrPort
	tcp  *net.TCPListener
	used bool
}

// loop is one event loop and the engine shard it runs.
type loop struct {
	srv   *Server
	idx   int
	eng   *engine.Engine
	epfd  int
	ep    *os.File
	box   *inbox
	timer int

	events []unix.EpollEvent
	rx     *rxBatch
	tx     *txBatch
	out    engine.Output

	listeners []*udpSock
	relays    []relaySock
	streams   map[engine.SocketID]*streamConn
	spare     []msg
	// offloaded are the channels this loop installed in the kernel fast
	// path, by relay and peer.
	offloaded map[[2]netip.AddrPort]*offloadEntry

	closing atomic.Bool
	done    chan struct{}
}

func newLoop(srv *Server, idx int, eng *engine.Engine) (*loop, error) {
	l := &loop{srv: srv, idx: idx, eng: eng, epfd: -1, timer: -1,
		events:    make([]unix.EpollEvent, maxEvents),
		rx:        newRxBatch(batchSize, engine.Headroom, datagramRx, engine.Tailroom),
		tx:        newTxBatch(batchSize, srv.gso),
		streams:   map[engine.SocketID]*streamConn{},
		offloaded: map[[2]netip.AddrPort]*offloadEntry{},
		done:      make(chan struct{}),
	}
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if l.box, err = newInbox(); err != nil {
		l.closeFDs()
		return nil, os.NewSyscallError("eventfd", err)
	}
	if l.timer, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		l.closeFDs()
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	spec := unix.ItimerSpec{Interval: unix.NsecToTimespec(int64(tickEvery)), Value: unix.NsecToTimespec(int64(tickEvery))}
	if err = unix.TimerfdSettime(l.timer, 0, &spec, nil); err != nil {
		l.closeFDs()
		return nil, os.NewSyscallError("timerfd_settime", err)
	}
	for _, r := range []struct {
		fd   int
		kind int32
	}{{l.box.fd, evInbox}, {l.timer, evTimer}} {
		if err = l.watch(r.fd, r.kind, 0); err != nil {
			l.closeFDs()
			return nil, err
		}
	}
	// The epoll descriptor itself goes into Go's netpoller: the loop parks
	// there, like any goroutine waiting for a socket, when nothing is ready.
	if err = unix.SetNonblock(l.epfd, true); err != nil {
		l.closeFDs()
		return nil, os.NewSyscallError("fcntl", err)
	}
	l.ep = os.NewFile(uintptr(l.epfd), "epoll")
	return l, nil
}

// watch adds fd to the epoll set, level-triggered.
func (l *loop) watch(fd int, kind int32, index int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: kind, Pad: int32(index)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (l *loop) unwatch(fd int) {
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

func (l *loop) closeFDs() {
	if l.ep != nil {
		_ = l.ep.Close()
	} else if l.epfd >= 0 {
		_ = unix.Close(l.epfd)
	}
	if l.box != nil {
		l.box.close()
	}
	if l.timer >= 0 {
		_ = unix.Close(l.timer)
	}
}

// run is the loop's goroutine.
func (l *loop) run() {
	defer close(l.done)
	rc, err := l.ep.SyscallConn()
	if err == nil {
		err = rc.Read(func(uintptr) bool { return l.poll() })
	}
	if err != nil && !l.closing.Load() {
		l.srv.log.Error("event loop stopped", "loop", l.idx, "err", err)
	}
}

// poll handles what is ready until nothing is; false parks the loop in
// the netpoller until the epoll descriptor is readable again, true ends it.
func (l *loop) poll() bool {
	for {
		if l.closing.Load() {
			return true
		}
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])),
			uintptr(len(l.events)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 || n == 0 {
			return false
		}
		// When every ready socket was read empty, there is no need to ask
		// epoll once more before parking: a datagram that arrives from now
		// on makes the epoll descriptor readable again, which wakes the
		// loop through the netpoller.
		drained := int(n) < len(l.events)
		for i := range int(n) {
			ev := &l.events[i]
			switch ev.Fd {
			case evListener:
				if l.readListener(l.listeners[ev.Pad]) == batchSize {
					drained = false
				}
			case evRelay:
				if l.readRelay(int(ev.Pad)) == batchSize {
					drained = false
				}
			case evInbox:
				l.drainInbox()
			case evTimer:
				var v [8]byte
				_, _ = unix.Read(l.timer, v[:])
				l.offloadCounts()
				l.eng.Tick(&l.out, time.Now())
				l.flush()
			}
		}
		if drained {
			return l.closing.Load()
		}
	}
}

// readListener reads one batch from a client-facing UDP socket and
// returns how many datagrams it read.
func (l *loop) readListener(s *udpSock) int {
	c := engine.Client{Transport: engine.UDP, Socket: s.id, Local: s.addr}
	return l.read(s.fd, s.info, func(i int, src netip.AddrPort, now time.Time) {
		c.Remote = src
		if s.info {
			var ok bool
			if c.Local, ok = l.rx.destination(i, s.addr.Port()); !ok {
				c.Local = s.addr
			}
		}
		size := int(l.rx.hdrs[i].n)
		l.eng.HandleClient(&l.out, &c, l.rx.bufs[i][engine.Headroom:engine.Headroom+size], now)
	})
}

// readRelay reads one batch from relay socket index and returns how many
// datagrams it read.
func (l *loop) readRelay(index int) int {
	if index >= len(l.relays) || !l.relays[index].used {
		return 0
	}
	id := relayID(l.idx, index)
	return l.read(l.relays[index].fd, false, func(i int, src netip.AddrPort, now time.Time) {
		l.eng.HandlePeer(&l.out, id, src, l.rx.bufs[i], int(l.rx.hdrs[i].n), now)
	})
}

// read reads one batch from fd (with packet info when info is set), hands
// each whole datagram with its source to handle, and carries out the
// commands. It returns how many datagrams it read.
func (l *loop) read(fd int, info bool, handle func(i int, src netip.AddrPort, now time.Time)) int {
	n, e := l.rx.recvmmsg(fd, info)
	if e != 0 {
		l.srv.counters.recvErrors.Add(1)
		return 0
	}
	if n == 0 {
		return 0
	}
	now := time.Now()
	for i := range n {
		if l.rx.truncated(i) {
			l.srv.counters.oversized.Add(1)
			continue
		}
		if src, ok := l.rx.source(i); ok {
			handle(i, src, now)
		}
	}
	l.flush()
	return n
}

func relayID(shard, index int) engine.RelayID {
	return engine.RelayID(shard<<24 | index)
}

// queue adds a datagram to the send batch, sending the batch first when
// it is for another socket or full.
func (l *loop) queue(fd int, v6, info bool, data []byte, to, from netip.AddrPort) {
	tx := l.tx
	if tx.fd != fd || tx.n == len(tx.hdrs) {
		l.send()
		tx.fd, tx.v6, tx.info = fd, v6, info
	}
	tx.add(data, to, from)
}

// send sends the batch queued.
func (l *loop) send() {
	if l.tx.n == 0 {
		return
	}
	_, dropped := l.tx.flush()
	if dropped > 0 {
		l.srv.counters.sendDrops.Add(uint64(dropped))
	}
}

// flush carries out the engine's commands in order: datagrams are batched
// per socket; anything else first sends what is queued.
func (l *loop) flush() {
	out := &l.out
	for i := range out.FastPath {
		l.control(&out.FastPath[i])
	}
	for i := 0; i < len(out.Cmds); i++ {
		c := &out.Cmds[i]
		switch c.Op {
		case engine.OpSendClient:
			if s := l.srv.udpSocket(c.Client.Socket); s != nil {
				l.queue(s.fd, s.v6, s.info, c.Data, c.Client.Remote, c.Client.Local)
			} else if sc := l.streams[c.Client.Socket]; sc != nil {
				sc.write(c.Data)
			}
		case engine.OpSendPeer:
			idx := c.Relay.Index()
			if idx < len(l.relays) && l.relays[idx].used && l.relays[idx].fd >= 0 {
				r := &l.relays[idx]
				l.queue(r.fd, r.v6, false, c.Data, c.Peer, netip.AddrPort{})
			}
		default:
			l.send()
			l.control(c)
		}
	}
	l.send()
	out.Reset()
}

// setRelay stores a relay socket at index, growing the table.
func (l *loop) setRelay(index int, r relaySock) {
	for len(l.relays) <= index {
		l.relays = append(l.relays, relaySock{fd: -1})
	}
	r.used = true
	l.relays[index] = r
	if r.fd >= 0 {
		if err := l.watch(r.fd, evRelay, index); err != nil {
			l.srv.log.Warn("relay socket not watched", "err", err)
		}
	}
}

// dropRelay forgets relay index and returns its socket.
func (l *loop) dropRelay(index int) (relaySock, bool) {
	if index >= len(l.relays) || !l.relays[index].used {
		return relaySock{}, false
	}
	r := l.relays[index]
	l.relays[index] = relaySock{fd: -1}
	if r.fd >= 0 {
		l.unwatch(r.fd)
	}
	return r, true
}

func (l *loop) closeRelay(r relaySock) {
	if r.fd >= 0 {
		_ = unix.Close(r.fd)
	}
	if r.tcp != nil {
		_ = r.tcp.Close()
		l.srv.ports.releaseTCP(r.addr)
	}
}

// control carries out a command other than a send.
func (l *loop) control(c *engine.Command) {
	switch c.Op {
	case engine.OpOpenRelay:
		l.openRelay(c)
	case engine.OpCloseRelay:
		if r, ok := l.dropRelay(c.Relay.Index()); ok {
			l.closeRelay(r)
		}
	case engine.OpAdoptRelay:
		from := l.srv.loops[c.Old.Shard()]
		from.box.post(msg{kind: msgGiveRelay, old: c.Old, relay: c.Relay, to: l})
	case engine.OpConnectPeer:
		l.srv.dial(l, c)
	case engine.OpClosePeer:
		l.srv.closePeer(c.Conn)
	case engine.OpJoin:
		if sc := l.streams[c.Client.Socket]; sc != nil {
			delete(l.streams, sc.id)
			l.srv.join(sc, c.Conn, c.Join)
		}
	case engine.OpCloseClient:
		if sc := l.streams[c.Client.Socket]; sc != nil {
			sc.close()
		}
	case engine.OpOffload:
		o := *c.Offload
		if err := l.srv.opts.Offload.Put(o); err != nil {
			if l.srv.counters.offloadFails.Add(1) == 1 {
				l.srv.log.Warn("fast path entry not installed; the channel relays in user space (later failures are only counted: ferry_offload_install_failures_total)",
					"channel", o.Number, "client", o.Client, "err", err)
			}
			break
		}
		key := [2]netip.AddrPort{o.Relay, o.Peer}
		if e := l.offloaded[key]; e != nil {
			e.ch = o
		} else {
			l.offloaded[key] = &offloadEntry{ch: o}
			l.srv.counters.offloaded.Add(1)
		}
	case engine.OpUnoffload:
		key := [2]netip.AddrPort{c.Offload.Relay, c.Offload.Peer}
		e := l.offloaded[key]
		if e == nil { // never installed: nothing relayed in the kernel
			l.eng.OffloadTraffic(&l.out, c.Offload, engine.OffloadCounters{}, true)
			break
		}
		// Its last counts, then the entry: what the kernel relays in
		// between is counted in its stats only.
		l.offloadCount(e, true)
		delete(l.offloaded, key)
		l.srv.counters.offloaded.Add(-1)
		if err := l.srv.opts.Offload.Delete(e.ch); err != nil {
			l.srv.log.Warn("fast path entry not removed", "relay", e.ch.Relay, "peer", e.ch.Peer, "err", err)
		}
	case engine.OpCheckUser:
		q := l.srv.opts.UserQuota
		if q == nil {
			l.eng.UserChecked(&l.out, c.Alloc, true, false, time.Now())
			break
		}
		user, id := c.User, c.Alloc
		go func() {
			ok, counted := q.Acquire(user)
			l.call(func(l *loop) {
				l.eng.UserChecked(&l.out, id, ok, counted, time.Now())
				l.flush()
			})
		}()
	case engine.OpReleaseUser:
		if q := l.srv.opts.UserQuota; q != nil {
			q.Release(c.User)
		}
	case engine.OpEnded:
		if u := l.srv.opts.Usage; u != nil {
			u(*c.Ended)
		}
	case engine.OpReroute:
		if sc := l.streams[c.Client.Socket]; sc != nil {
			delete(l.streams, sc.id)
			to := l.srv.loops[c.Shard]
			sc.owner.Store(to)
			frame := getBuf(len(c.Data))
			copy(*frame, c.Data)
			to.box.post(msg{kind: msgFrame, sc: sc, frame: frame, n: len(c.Data)})
		}
	}
}

// offloadEntry is a channel the loop installed in the kernel fast path
// and the kernel's counts already reported to the engine.
type offloadEntry struct {
	ch   engine.OffloadChannel
	seen engine.OffloadCounters
}

// offloadCounts reports the kernel's counts of the loop's offloaded
// channels to its engine.
func (l *loop) offloadCounts() {
	for _, e := range l.offloaded {
		l.offloadCount(e, false)
	}
}

// offloadCount reports what the kernel relayed on e since the last
// report; final: e is being removed.
func (l *loop) offloadCount(e *offloadEntry, final bool) {
	var d engine.OffloadCounters
	if c, err := l.srv.opts.Offload.Counters(e.ch); err == nil {
		d = engine.OffloadCounters{
			ToPeerPackets:   c.ToPeerPackets - e.seen.ToPeerPackets,
			ToPeerBytes:     c.ToPeerBytes - e.seen.ToPeerBytes,
			FromPeerPackets: c.FromPeerPackets - e.seen.FromPeerPackets,
			FromPeerBytes:   c.FromPeerBytes - e.seen.FromPeerBytes,
		}
		if c.ToPeerPackets < e.seen.ToPeerPackets || c.FromPeerPackets < e.seen.FromPeerPackets {
			d = c // the kernel's entry started over
		}
		e.seen = c
	}
	if final || d != (engine.OffloadCounters{}) {
		l.eng.OffloadTraffic(&l.out, &e.ch, d, final)
	}
}

// openRelay binds the relay socket the engine asked for and reports the
// outcome.
func (l *loop) openRelay(c *engine.Command) {
	now := time.Now()
	o := c.Open
	if o.TCP {
		ln, addr, err := l.srv.ports.openTCP(o.Family)
		if err == nil {
			l.setRelay(c.Relay.Index(), relaySock{fd: -1, tcp: ln, addr: addr})
			l.srv.acceptPeers(l, c.Relay, ln)
		}
		l.eng.RelayOpened(&l.out, c.Relay, addr, err, now)
		return
	}
	a, b, err := l.srv.ports.openUDP(o.Family, o.Even, o.Pair != 0, o.DontFragment)
	if err == nil {
		l.setRelay(c.Relay.Index(), relaySock{fd: a.fd, v6: o.Family == 6, addr: a.addr})
		if o.Pair != 0 {
			l.setRelay(o.Pair.Index(), relaySock{fd: b.fd, v6: o.Family == 6, addr: b.addr})
		}
	}
	l.eng.RelayOpened(&l.out, c.Relay, a.addr, err, now)
}

// drainInbox handles what other goroutines posted.
func (l *loop) drainInbox() {
	q := l.box.take(l.spare)
	now := time.Now()
	for i := range q {
		m := &q[i]
		switch m.kind {
		case msgFrame:
			if m.sc.owner.Load() != l {
				m.sc.owner.Load().box.post(*m) // rerouted since it was posted
				break
			}
			l.streams[m.sc.id] = m.sc
			l.eng.HandleClient(&l.out, &m.sc.client, (*m.frame)[:m.n], now)
			bind := m.sc.pendingBind.Load()
			l.flush()
			putBuf(m.frame)
			// Answered without a join (and not handed to another loop):
			// the reader goes on reading frames.
			if bind && m.sc.owner.Load() == l && m.sc.pendingBind.CompareAndSwap(true, false) {
				m.sc.joinCh <- joinVerdict{}
			}
			m.sc.credit()
		case msgStreamOpened:
			if !l.eng.StreamOpened(&m.sc.client, now) {
				m.sc.close()
				break
			}
			l.streams[m.sc.id] = m.sc
		case msgStreamClosed:
			delete(l.streams, m.sc.id)
			l.eng.StreamClosed(&l.out, &m.sc.client, now)
		case msgCall:
			m.fn(l)
			close(m.done)
		case msgGiveRelay:
			if r, ok := l.dropRelay(m.old.Index()); ok {
				l.eng.RelayAdopted(m.old)
				m.to.box.post(msg{kind: msgTakeRelay, relay: m.relay, sock: r})
			}
		case msgTakeRelay:
			l.setRelay(m.relay.Index(), m.sock)
		case msgPeerAccepted:
			id, ok := l.eng.PeerAccepted(&l.out, m.relay, m.peer, now)
			if !ok {
				_ = m.conn.Close()
				break
			}
			l.srv.addPeer(id, m.conn)
		case msgPeerConnected:
			if m.err == nil {
				l.srv.addPeer(m.id, m.conn)
			}
			l.eng.PeerConnected(&l.out, m.id, m.err, now)
		case msgPeerClosed:
			l.eng.PeerClosed(m.id, now)
		}
		l.flush()
		*m = msg{}
	}
	l.spare = q
}

// call runs fn on the loop and waits for it, unless the loop has ended.
func (l *loop) call(fn func(*loop)) {
	done := make(chan struct{})
	if !l.box.post(msg{kind: msgCall, fn: fn, done: done}) {
		return
	}
	select {
	case <-done:
	case <-l.done:
	}
}
