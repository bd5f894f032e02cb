package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/stunwire"
	"github.com/ferryrtc/ferry/relay"
)

// Engine is one shard of ferry's TURN server: it owns the allocations whose
// client 5-tuples the data plane steers to it, and their relays,
// permissions and channels. It does no I/O and reads no clock: events come
// in (client packets, peer datagrams, relay and connection outcomes, timer
// ticks, each with the time) and commands go out into an Output. It is not
// safe for concurrent use; the data plane calls each shard from one loop.
type Engine struct {
	sh    *Shared
	cfg   *Config
	shard int
	log   *slog.Logger

	mac *stunwire.MAC
	msg stunwire.Message
	b   stunwire.Builder

	now  int64 // the current event's monotonic time, ns since Shared's epoch
	wall int64 // ... and Unix seconds

	stats Stats

	allocs map[tuple]*allocation
	// ending are ended allocations awaiting the fast path's last counts,
	// by ID.
	ending map[uint64]*allocation
	// checking are pending allocations awaiting UserChecked, by ID.
	checking  map[uint64]*allocation
	relays    []relaySlot
	freeRelay []int
	timers    timerHeap
	nextAlloc uint64

	peers map[uint32]*peerConn // RFC 6062 peer connections by CONNECTION-ID
	conns map[SocketID]*conn   // client connections (TCP, TLS, DTLS)
	idle  connCounts

	nat map[netip.AddrPort]natRef

	policy  *relay.Policy // the policy the permissions were last checked against
	scratch []RelayID
	tid     uint64 // transaction IDs of the indications ferry sends
}

// relaySlot is what a relay index stands for.
type relaySlot struct {
	a          *allocation // nil when free, reserved or orphaned
	reserved   bool        // held for a RESERVATION-TOKEN
	used       bool
	orphanPair RelayID // the pair of an orphaned slot (its allocation ended while it was being bound)
}

// natRef locates a local address in the RFC 5780 sets.
type natRef struct {
	set  int
	role int
}

// New returns shard number shard (0 to cfg.Shards-1) of the server sh
// describes.
func New(sh *Shared, shard int) (*Engine, error) {
	if shard < 0 || shard >= sh.cfg.Shards {
		return nil, fmt.Errorf("engine: shard %d of %d", shard, sh.cfg.Shards)
	}
	log := sh.cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		sh:       sh,
		cfg:      &sh.cfg,
		shard:    shard,
		log:      log,
		mac:      stunwire.NewMAC(),
		allocs:   map[tuple]*allocation{},
		ending:   map[uint64]*allocation{},
		checking: map[uint64]*allocation{},
		peers:    map[uint32]*peerConn{},
		conns:    map[SocketID]*conn{},
		idle:     connCounts{perIP: map[netip.Addr]int{}},
		nat:      map[netip.AddrPort]natRef{},
		relays:   make([]relaySlot, 1), // index 0 is never used: RelayID 0 means none
	}
	for i, set := range sh.cfg.NAT {
		for role, a := range set.Addr {
			e.nat[a] = natRef{set: i, role: role}
		}
	}
	e.policy = sh.policy.Load()
	sh.register(&e.stats)
	return e, nil
}

// Shard returns the engine's shard number.
func (e *Engine) Shard() int { return e.shard }

// setTime records the time of the event being handled.
func (e *Engine) setTime(now time.Time) {
	e.now = e.sh.mono(now)
	e.wall = now.Unix()
}

// HandleClient takes one packet from a client: a STUN message or
// ChannelData datagram, or one frame of a connection. pkt may be referred
// to by the commands it yields (ChannelData to a peer is sent from it).
func (e *Engine) HandleClient(out *Output, c *Client, pkt []byte, now time.Time) {
	e.setTime(now)
	if c.Transport.Connected() {
		e.touchConn(c)
	}
	switch stunwire.Classify(pkt) {
	case stunwire.KindChannelData:
		e.channelDataFromClient(out, c, pkt)
	case stunwire.KindSTUN:
		e.stunFromClient(out, c, pkt)
	default:
		e.stats.Dropped[DropMalformed].inc()
	}
}

// stunFromClient handles a STUN message from a client.
func (e *Engine) stunFromClient(out *Output, c *Client, pkt []byte) {
	m := &e.msg
	if err := stunwire.Parse(pkt, m); err != nil {
		e.stats.Dropped[DropMalformed].inc()
		return
	}
	if _, alt := e.nat[c.Local]; alt && c.Transport == UDP {
		ref := e.nat[c.Local]
		if ref.role != 0 {
			// Alternate sockets answer Binding requests only.
			if m.Type == stun.BindingRequest {
				e.binding(out, c, m, len(pkt))
			} else {
				e.stats.Dropped[DropMalformed].inc()
			}
			return
		}
	}
	switch m.Type.Class {
	case stun.ClassRequest:
		e.request(out, c, m, len(pkt))
	case stun.ClassIndication:
		if m.Type.Method == stun.MethodSend {
			e.sendIndication(out, c, m)
			return
		}
		e.stats.Dropped[DropMalformed].inc()
	default:
		e.stats.Dropped[DropMalformed].inc()
	}
}

// Tick runs the timers due at now: expired allocations, permissions,
// channels, reservations, unbound peer connections and idle client
// connections. Call it about once a second.
func (e *Engine) Tick(out *Output, now time.Time) {
	e.setTime(now)
	for len(e.timers) > 0 && e.timers[0].deadline <= e.now {
		a := e.timers[0]
		e.sweep(out, a)
	}
	e.scratch = e.sh.expireReservations(e.scratch[:0], e.shard, e.now)
	for _, r := range e.scratch {
		e.freeRelaySlot(r)
		out.add(Command{Op: OpCloseRelay, Relay: r})
	}
	e.expirePeers(out)
	e.expireConns(out)
	e.logSuppressed()
	if p := e.sh.policy.Load(); p != e.policy {
		e.policy = p
		for _, a := range e.allocs {
			e.revalidate(out, a, p)
		}
	}
}

// revalidate drops the permissions and channels of a that policy p no
// longer admits (ferry's own addresses changed).
func (e *Engine) revalidate(out *Output, a *allocation, p *relay.Policy) {
	perms := a.perms[:0]
	for _, x := range a.perms {
		if ok, _ := p.Check(x.ip); ok {
			perms = append(perms, x)
		} else {
			e.stats.PermissionsActive.dec()
		}
	}
	clear(a.perms[len(perms):])
	a.perms = perms
	for i := range a.chans {
		ch := &a.chans[i]
		if ok, _ := p.Check(ch.peer.Addr()); ok && p.PortAllowed(ch.peer) {
			continue
		}
		e.unoffload(out, a, ch)
		if ch.active {
			ch.active = false
			e.stats.ChannelsActive.dec()
		}
		ch.expires = min(ch.expires, e.now)
	}
}

// logKind is a kind of log line clients cause; each kind has its own
// budget (see ClientLogBurst), so that a flood of one kind does not hide
// the others.
type logKind uint8

const (
	logCredentialRefused logKind = iota
	logPeerRefused
	logRelayNotBound
	numLogKinds
)

// logKinds are the message and level of each kind.
var logKinds = [numLogKinds]struct {
	msg   string
	level slog.Level
}{
	logCredentialRefused: {"credential refused", slog.LevelInfo},
	logPeerRefused:       {"peer refused by policy", slog.LevelInfo},
	// A relay socket that cannot be bound is the server's problem (the
	// port range is used up, relay.ip is not an address of the host).
	logRelayNotBound: {"relay socket not bound", slog.LevelWarn},
}

// logClient writes a line of kind k a client caused, within the
// process-wide budget of that kind; lines left out are counted and
// reported by logSuppressed.
func (e *Engine) logClient(k logKind, attrs ...slog.Attr) {
	ctx := context.Background()
	kind := &logKinds[k]
	if !e.log.Enabled(ctx, kind.level) || !e.sh.allowLog(k, e.now) {
		return
	}
	e.log.LogAttrs(ctx, kind.level, kind.msg, attrs...)
}

// logSuppressed writes, for each kind of client-caused line some of which
// were left out, at most every ClientLogSummaryEvery, how many were. Any
// shard may write it; each line left out is counted once.
func (e *Engine) logSuppressed() {
	for k := range numLogKinds {
		n, over := e.sh.logs[k].Suppressed(e.now, int64(ClientLogSummaryEvery))
		if n == 0 {
			continue
		}
		kind := &logKinds[k]
		e.log.LogAttrs(context.Background(), kind.level, "similar lines suppressed",
			slog.String("of", kind.msg),
			slog.Uint64("lines", n),
			slog.Duration("within", time.Duration(over).Round(time.Second)),
			slog.String("limit", fmt.Sprintf("%d at once, then %d a minute", ClientLogBurst, ClientLogsPerMinute)))
	}
}

// Stats returns this shard's counters.
func (e *Engine) Stats() *Stats { return &e.stats }
