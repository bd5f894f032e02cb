package engine

import (
	"net/netip"
	"sync/atomic"
)

// Transport is a client's transport to ferry.
type Transport uint8

// Client transports.
const (
	UDP Transport = iota
	TCP
	TLS
	DTLS
	numTransports
)

// String returns the transport as logged and labelled: udp, tcp, tls, dtls.
func (t Transport) String() string {
	switch t {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	case TLS:
		return "tls"
	case DTLS:
		return "dtls"
	}
	return "unknown"
}

// Connected reports whether the transport is a connection (TCP, TLS, DTLS):
// its source address is proven by the handshake, and a closed connection
// ends its allocation.
func (t Transport) Connected() bool { return t != UDP }

// byteStream reports whether ChannelData must be padded to 4 bytes (RFC
// 8656 §12.5: over TCP and TLS, not over UDP or DTLS).
func (t Transport) byteStream() bool { return t == TCP || t == TLS }

// Transports lists every client transport.
func Transports() []Transport { return []Transport{UDP, TCP, TLS, DTLS} }

// SocketID names, for the data plane, the client-facing socket or the
// connection a packet arrived on and its answer leaves by.
type SocketID uint32

// Client says where a client packet came from and where its answers go:
// the 5-tuple (transport, the ferry address the client sent to, the
// client's address) and the socket or connection that carries it.
type Client struct {
	Transport Transport
	Socket    SocketID
	Local     netip.AddrPort
	Remote    netip.AddrPort
}

// tuple is the allocation key: RFC 8656's 5-tuple.
type tuple struct {
	transport Transport
	local     netip.AddrPort
	remote    netip.AddrPort
}

func (c *Client) tuple() tuple { return tuple{c.Transport, c.Local, c.Remote} }

// RelayID names a relay socket (a UDP socket or an RFC 6062 TCP listener)
// that the engine asked the data plane to open. IDs are dense per shard:
// the shard's number in the top 8 bits, an index below.
type RelayID uint32

const relayIndexBits = 24

func relayID(shard, index int) RelayID { return RelayID(shard<<relayIndexBits | index) }

// Shard returns the number of the shard that owns the relay.
func (r RelayID) Shard() int { return int(r >> relayIndexBits) }

// Index returns the relay's dense index within its shard.
func (r RelayID) Index() int { return int(r & (1<<relayIndexBits - 1)) }

// Op is what a Command asks the data plane to do.
type Op uint8

// Commands.
const (
	// OpSendClient sends Data to Client.Remote from Client.Local over
	// Client.Socket.
	OpSendClient Op = iota + 1
	// OpSendPeer sends Data from relay Relay to Peer.
	OpSendPeer
	// OpOpenRelay binds relay socket Relay (see Open) and reports the
	// outcome with Engine.RelayOpened.
	OpOpenRelay
	// OpCloseRelay closes relay socket Relay.
	OpCloseRelay
	// OpAdoptRelay moves the open relay socket Old, owned by shard
	// Old.Shard(), into this shard as Relay (a reserved port taken by an
	// Allocate that landed on another shard).
	OpAdoptRelay
	// OpConnectPeer dials Peer over TCP from the address of relay Relay
	// (RFC 6062 Connect) and reports with Engine.PeerConnected(Conn).
	OpConnectPeer
	// OpClosePeer closes the peer TCP connection Conn.
	OpClosePeer
	// OpJoin binds the client data connection Client.Socket to peer
	// connection Conn (RFC 6062 ConnectionBind): from now on the data
	// plane copies bytes between them, counting them in Join.Traffic and
	// pacing them with Join.Shaper. The engine forgets the client
	// connection.
	OpJoin
	// OpCloseClient closes the client connection Client.Socket.
	OpCloseClient
	// OpReroute hands the client connection Client.Socket, with the frame
	// Data it sent, to shard Shard, which owns what the frame refers to
	// (an RFC 6062 CONNECTION-ID). The engine forgets the connection.
	OpReroute
	// OpOffload installs or refreshes Offload in the kernel fast path.
	OpOffload
	// OpUnoffload removes Offload from the kernel fast path.
	OpUnoffload
	// OpEnded reports an allocation that ended, with its traffic: the
	// usage record (Ended).
	OpEnded
	// OpCheckUser asks the cluster whether User may hold one more
	// allocation (Alloc, its ID): answer with Engine.UserChecked.
	OpCheckUser
	// OpReleaseUser takes one allocation of User off the cluster's count
	// (one UserChecked counted).
	OpReleaseUser
)

// OpenRelay describes a relay socket to bind.
type OpenRelay struct {
	// Family is 4 or 6.
	Family uint8
	// TCP asks for an RFC 6062 TCP listener instead of a UDP socket.
	TCP bool
	// Even asks for an even port (EVEN-PORT).
	Even bool
	// Pair, when not zero, asks for the next port too, bound now as relay
	// Pair and kept for a RESERVATION-TOKEN (EVEN-PORT with the R bit).
	Pair RelayID
	// DontFragment sets the DF bit on datagrams to peers (DONT-FRAGMENT).
	DontFragment bool
}

// Command is one thing for the data plane to do. Data points into the
// input packet or the Output's arena: use it before Output.Reset.
type Command struct {
	Op      Op
	Client  Client
	Relay   RelayID
	Old     RelayID
	Peer    netip.AddrPort
	Conn    uint32
	Shard   int
	Open    OpenRelay
	Data    []byte
	Join    *Join
	Offload *OffloadChannel
	Ended   *AllocationInfo
	User    string
	Alloc   uint64
}

// Join is what the data plane needs to relay an RFC 6062 data connection.
type Join struct {
	Traffic *Traffic
	Shaper  *Shaper
}

// Traffic counts one allocation's relayed packets and bytes. The data plane
// adds to it for RFC 6062 data connections; the engine for datagrams.
type Traffic struct {
	ToPeerPackets, ToPeerBytes     atomic.Uint64
	FromPeerPackets, FromPeerBytes atomic.Uint64
}

// Count adds one read or write of n bytes in a direction, from any
// goroutine (the data plane's RFC 6062 copies).
func (t *Traffic) Count(toPeer bool, n int) {
	if toPeer {
		t.ToPeerPackets.Add(1)
		t.ToPeerBytes.Add(uint64(n))
		return
	}
	t.FromPeerPackets.Add(1)
	t.FromPeerBytes.Add(uint64(n))
}

// count adds one datagram of n bytes in a direction. Only the shard's loop
// counts datagrams, so it loads and stores without a locked instruction.
func (t *Traffic) count(toPeer bool, n int) {
	if toPeer {
		t.ToPeerPackets.Store(t.ToPeerPackets.Load() + 1)
		t.ToPeerBytes.Store(t.ToPeerBytes.Load() + uint64(n))
		return
	}
	t.FromPeerPackets.Store(t.FromPeerPackets.Load() + 1)
	t.FromPeerBytes.Store(t.FromPeerBytes.Load() + uint64(n))
}

// Output collects the commands of the events handed to an Engine. Reuse
// one per loop: Reset it once its commands are carried out.
type Output struct {
	// FastPath are the kernel fast path's table changes (OpOffload,
	// OpUnoffload). The data plane applies them before it carries out
	// Cmds, so that no packet of the same events (a Refresh's answer, a
	// ChannelBind's) leaves before the table says what it must.
	FastPath []Command
	Cmds     []Command
	arena    []byte
}

// Reset forgets the commands; the memory is reused.
func (o *Output) Reset() {
	clear(o.Cmds)
	o.Cmds = o.Cmds[:0]
	if len(o.FastPath) > 0 {
		clear(o.FastPath)
		o.FastPath = o.FastPath[:0]
	}
	o.arena = o.arena[:0]
}

func (o *Output) add(c Command) { o.Cmds = append(o.Cmds, c) }

// Headroom is the space the data plane leaves before a datagram read from
// a relay socket, where the engine writes the ChannelData header or the
// Data indication's header in place; tailroom of 4 bytes must follow the
// datagram for padding.
const (
	Headroom = 64
	Tailroom = 4
)
