package edge

import (
	"encoding/binary"
	"log/slog"
	"net"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// DefaultMTU is the default inbound size limit, pion's InboundMTU: a
	// datagram or frame of this many bytes or more is oversized.
	DefaultMTU = 1600
	// DefaultIdleTimeout is how long a new stream connection may take to
	// send its first complete frame.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultHandshakeTimeout bounds a TLS or DTLS handshake.
	DefaultHandshakeTimeout = 10 * time.Second

	// maxSoftware is the longest SOFTWARE value RFC 8489 allows (fewer than
	// 128 characters, at most 763 bytes).
	maxSoftware = 763
	// minMTU keeps a misconfigured MTU from rejecting every STUN header.
	minMTU = 64
)

// Options configures the wrappers. The zero value wraps without SOFTWARE,
// inspection or counting.
type Options struct {
	// Software, if non-empty, is added as a SOFTWARE attribute to Binding
	// success responses and to error responses that carry no
	// MESSAGE-INTEGRITY (before FINGERPRINT, which is recomputed). Values
	// longer than 763 bytes are truncated.
	Software string
	// Screen, if set, is called with every STUN request that carries a
	// MESSAGE-INTEGRITY attribute, before pion sees it, on the reading
	// goroutine, with the client's address. raw is only valid during the
	// call and must not be modified. If Screen returns a reply, the reply is
	// sent to the client (with the response fix-ups) and the request is
	// dropped: the auth package answers refused credentials with 401 and
	// REALM/NONCE there, because pion v5.0.13 answers them with a bare 400.
	Screen func(raw []byte, src net.Addr) (reply []byte)
	// Gate, if set, is called after Screen let a request carrying
	// MESSAGE-INTEGRITY through, with the client's address and the local
	// address it reached (pion's 5-tuple). It may rewrite raw in place
	// without changing its length (the relay package lowers LIFETIME and
	// re-signs), or return a reply that is sent instead of passing the
	// request to pion (the relay package's 508 for permissions and
	// channels over quota).
	Gate func(raw []byte, src, local net.Addr) (reply []byte)
	// Sign, if set, signs the answers pion v5.0.13 sends without
	// MESSAGE-INTEGRITY to authenticated RFC 6062 requests on stream
	// connections: the ConnectionBind success and Connect errors. Clients
	// that check integrity (coturn's) refuse them unsigned. It gets the
	// request and the response and returns the signed response, or nil to
	// send it as it is.
	Sign func(req, resp []byte) []byte
	// Guard, if set, applies per-source-IP request limits, nonce expiry and
	// nonce binding. Share one Guard between every wrapper of a server.
	Guard *Guard
	// Refuse, if set, builds the 401 answer to an authenticated request
	// from an address that used up the Guard's refused credentials, without
	// verifying it (auth.Authenticator.Refuse). Without it such requests
	// are dropped.
	Refuse func(raw []byte) (reply []byte)
	// Counters, if set, receives the counts.
	Counters *Counters
	// Log receives connection-level events (never per packet); nil
	// discards.
	Log *slog.Logger

	// MTU is the inbound size limit; 0 means DefaultMTU. Set it to pion's
	// ServerConfig.InboundMTU when that is changed.
	MTU int
	// IdleTimeout closes a stream connection that sends no complete frame
	// this long after Accept; 0 means DefaultIdleTimeout, negative disables.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the lazy TLS/DTLS handshake; 0 means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// config is Options resolved once per wrapper and shared by its conns.
type config struct {
	software  []byte // encoded SOFTWARE attribute (header, value, padding); nil if none
	screen    func([]byte, net.Addr) []byte
	gate      func([]byte, net.Addr, net.Addr) []byte
	sign      func([]byte, []byte) []byte
	refuse    func([]byte) []byte
	guard     *Guard
	counters  *Counters
	log       *slog.Logger
	mtu       int
	idle      time.Duration
	handshake time.Duration
	bufs      sync.Pool // *[]byte scratch for rewritten responses
}

func newConfig(o Options) *config {
	c := &config{
		screen:    o.Screen,
		gate:      o.Gate,
		sign:      o.Sign,
		refuse:    o.Refuse,
		guard:     o.Guard,
		counters:  o.Counters,
		log:       o.Log,
		mtu:       o.MTU,
		idle:      o.IdleTimeout,
		handshake: o.HandshakeTimeout,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.mtu == 0 {
		c.mtu = DefaultMTU
	}
	if c.mtu < minMTU {
		c.log.Warn("edge: MTU too small, using minimum", "mtu", c.mtu, "minimum", minMTU)
		c.mtu = minMTU
	}
	if c.idle == 0 {
		c.idle = DefaultIdleTimeout
	}
	if c.handshake <= 0 {
		c.handshake = DefaultHandshakeTimeout
	}
	if o.Software != "" {
		sw := o.Software
		if len(sw) > maxSoftware {
			c.log.Warn("edge: SOFTWARE value too long, truncated", "bytes", len(sw), "max", maxSoftware)
			sw = truncateUTF8(sw, maxSoftware)
		}
		c.software = encodeSoftware(sw)
	}
	c.bufs.New = func() any {
		b := make([]byte, 0, 1024)
		return &b
	}
	return c
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// encodeSoftware returns the SOFTWARE attribute for value, padded.
func encodeSoftware(value string) []byte {
	b := make([]byte, attrHeaderSize, attrHeaderSize+pad4(len(value)))
	binary.BigEndian.PutUint16(b[0:2], attrSoftware)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(value)))
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// getBuf and putBuf lend scratch space for a rewritten response.
func (c *config) getBuf() *[]byte { return c.bufs.Get().(*[]byte) }

func (c *config) putBuf(bp *[]byte, used []byte) {
	if cap(used) > 64<<10 {
		return // do not keep pathological buffers
	}
	*bp = used[:0]
	c.bufs.Put(bp)
}
