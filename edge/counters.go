package edge

import (
	"sync/atomic"
	"unsafe"
)

// numShards is how many counter shards a Counters holds. Each wrapped UDP
// socket and each accepted stream connection takes the next shard in turn,
// so sockets read on different cores rarely write the same cache line.
const numShards = 16

// cacheLine is the padding unit between shards (two 64-byte lines, so the
// adjacent-line prefetcher does not couple neighbours either).
const cacheLine = 128

// Counters counts what the edge layer saw and did. The zero value is ready
// to use and must not be copied after first use; one Counters may be shared
// by any number of wrapped sockets and listeners. Counting is lock-free
// (atomics on per-socket shards); Snapshot sums the shards.
type Counters struct {
	next   atomic.Uint32
	shards [numShards]shard
}

// CounterValues is a point-in-time copy of Counters, for metrics code.
type CounterValues struct {
	// Malformed counts datagrams dropped because they were neither valid
	// ChannelData nor valid STUN, and complete stream frames dropped because
	// their STUN attributes were malformed.
	Malformed uint64
	// Oversized counts datagrams of MTU bytes or more (dropped) and stream
	// frames of MTU bytes or more (the connection ends).
	Oversized uint64
	// InvalidFrames counts stream connections ended because the byte stream
	// was neither STUN nor ChannelData.
	InvalidFrames uint64
	// IdleClosed counts stream connections closed because they sent no
	// complete frame within the idle timeout.
	IdleClosed uint64
	// HandshakeFailures counts TLS/DTLS handshakes that failed or timed out.
	HandshakeFailures uint64

	// BindingRequests counts STUN Binding requests passed to pion.
	BindingRequests uint64
	// OtherRequests counts STUN requests of every other method.
	OtherRequests uint64
	// Indications counts STUN indications (Send) passed to pion.
	Indications uint64
	// Responses counts STUN success/error responses received from clients
	// (passed to pion, which ignores them).
	Responses uint64
	// ChannelDataPackets counts ChannelData messages passed to pion.
	ChannelDataPackets uint64
	// ChannelDataBytes sums their application data length (the Length
	// field: header and padding excluded).
	ChannelDataBytes uint64

	// Rewritten403 counts ChannelBind 401 responses rewritten to 403.
	Rewritten403 uint64
	// AuthRefused counts requests Screen answered itself (refused
	// credentials, 401) instead of passing them to pion.
	AuthRefused uint64
	// SoftwareAdded counts responses a SOFTWARE attribute was added to.
	SoftwareAdded uint64

	// RateLimited counts requests dropped by the Guard's per-IP limit on
	// Allocate and unauthenticated requests.
	RateLimited uint64
	// AuthLimited counts requests carrying MESSAGE-INTEGRITY dropped
	// because their source IP used up its refused credentials.
	AuthLimited uint64
	// StaleNonces counts requests whose nonce was older than the Guard's
	// nonce lifetime, ForeignNonces those whose nonce was sent to another
	// IP address; both were answered 438.
	StaleNonces   uint64
	ForeignNonces uint64
	// GateReplies counts requests Gate answered itself (508 over a
	// permission or channel quota).
	GateReplies uint64
	// AmplificationTrimmed counts UDP responses sent without SOFTWARE or
	// reason phrase to stay within the amplification cap;
	// AmplificationDropped those dropped because even that was too large.
	AmplificationTrimmed uint64
	AmplificationDropped uint64
	// ConnectionBinds counts stream connections that became RFC 6062 peer
	// data connections (raw bytes after a successful ConnectionBind).
	ConnectionBinds uint64
}

// Snapshot returns the current totals. It is safe to call concurrently with
// counting; each field is read atomically, the set as a whole is not a
// single instant.
func (c *Counters) Snapshot() CounterValues {
	var v CounterValues
	if c == nil {
		return v
	}
	for i := range c.shards {
		s := &c.shards[i]
		v.Malformed += s.malformed.Load()
		v.Oversized += s.oversized.Load()
		v.InvalidFrames += s.invalidFrames.Load()
		v.IdleClosed += s.idleClosed.Load()
		v.HandshakeFailures += s.handshakeFailures.Load()
		v.BindingRequests += s.bindingRequests.Load()
		v.OtherRequests += s.otherRequests.Load()
		v.Indications += s.indications.Load()
		v.Responses += s.responses.Load()
		v.ChannelDataPackets += s.channelDataPackets.Load()
		v.ChannelDataBytes += s.channelDataBytes.Load()
		v.Rewritten403 += s.rewritten403.Load()
		v.AuthRefused += s.authRefused.Load()
		v.SoftwareAdded += s.softwareAdded.Load()
		v.RateLimited += s.rateLimited.Load()
		v.AuthLimited += s.authLimited.Load()
		v.StaleNonces += s.staleNonces.Load()
		v.ForeignNonces += s.foreignNonces.Load()
		v.GateReplies += s.gateReplies.Load()
		v.AmplificationTrimmed += s.amplificationTrimmed.Load()
		v.AmplificationDropped += s.amplificationDropped.Load()
		v.ConnectionBinds += s.connectionBinds.Load()
	}
	return v
}

// shard returns the shard for a new socket or connection. A nil Counters
// hands out a private shard nobody reads, so callers never check for nil.
func (c *Counters) shard() *shard {
	if c == nil {
		return new(shard)
	}
	i := c.next.Add(1) - 1
	return &c.shards[i%numShards]
}

type shardCounters struct {
	malformed          atomic.Uint64
	oversized          atomic.Uint64
	invalidFrames      atomic.Uint64
	idleClosed         atomic.Uint64
	handshakeFailures  atomic.Uint64
	bindingRequests    atomic.Uint64
	otherRequests      atomic.Uint64
	indications        atomic.Uint64
	responses          atomic.Uint64
	channelDataPackets atomic.Uint64
	channelDataBytes   atomic.Uint64
	rewritten403       atomic.Uint64
	authRefused        atomic.Uint64
	softwareAdded      atomic.Uint64

	rateLimited          atomic.Uint64
	authLimited          atomic.Uint64
	staleNonces          atomic.Uint64
	foreignNonces        atomic.Uint64
	gateReplies          atomic.Uint64
	amplificationTrimmed atomic.Uint64
	amplificationDropped atomic.Uint64
	connectionBinds      atomic.Uint64
}

// shard is one socket's counters, padded to whole cache lines.
type shard struct {
	shardCounters
	_ [cacheLine - unsafe.Sizeof(shardCounters{})%cacheLine]byte
}

// countPassed counts a packet or frame handed to pion.
func (s *shard) countPassed(in info) {
	switch in.kind {
	case kindChannelData:
		s.channelDataPackets.Add(1)
		s.channelDataBytes.Add(uint64(in.dataLen))
	case kindBindingRequest:
		s.bindingRequests.Add(1)
	case kindRequest:
		s.otherRequests.Add(1)
	case kindIndication:
		s.indications.Add(1)
	case kindResponse:
		s.responses.Add(1)
	}
}

// countRewrite counts a response sent rewritten according to p.
func (s *shard) countRewrite(p plan) {
	if p.fix403 {
		s.rewritten403.Add(1)
	}
	if p.addSoftware {
		s.softwareAdded.Add(1)
	}
	if p.trimmed {
		s.amplificationTrimmed.Add(1)
	}
}
