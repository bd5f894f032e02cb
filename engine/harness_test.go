package engine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/relay"
)

// The simulated network: one server (one or more shards) with its data
// plane played by the test, clients that speak STUN through pion/stun's
// message builder (the oracle), and peers that only send and receive
// datagrams.

const (
	testRealm  = "ferry.test"
	testSecret = "rest-secret"
)

var (
	relayIP4   = netip.MustParseAddr("192.0.2.1")
	relayIP6   = netip.MustParseAddr("2001:db8::1")
	serverAddr = netip.MustParseAddrPort("192.0.2.10:3478")
	server6    = netip.MustParseAddrPort("[2001:db8::10]:3478")
	peerNet    = netip.MustParsePrefix("203.0.113.0/24")
	peerNet6   = netip.MustParsePrefix("2001:db8:1::/48")
)

// sentToPeer is one datagram the engine sent from a relay.
type sentToPeer struct {
	relay RelayID
	from  netip.AddrPort
	to    netip.AddrPort
	data  string
	at    time.Time
}

// simNet is the test's data plane.
type simNet struct {
	t        testing.TB
	sh       *Shared
	eng      []*Engine
	now      time.Time
	out      Output
	relays   map[RelayID]netip.AddrPort // open relay sockets
	bound    map[netip.AddrPort]RelayID
	nextPort map[uint8]uint16
	failOpen func(OpenRelay) error
	inbox    map[netip.AddrPort][][]byte // by client remote address
	peerRx   []sentToPeer
	closed   []SocketID // client connections closed by the engine
	dials    []Command
	joins    []Command
	onCmd    func(shard int, c Command)
	// kernel is the simulated fast path's table: what the engine
	// offloaded, relayed here without the engine until its expiry.
	kernel map[[2]netip.AddrPort]*kernelEntry
	// ended are the usage records of ended allocations (OpEnded).
	ended []AllocationInfo
	// clusterUsers counts allocations per user as a cluster would
	// (OpCheckUser, OpReleaseUser), against clusterQuota.
	clusterUsers map[string]int
	clusterQuota int
}

// kernelEntry is one offloaded channel and the kernel's counts for it.
type kernelEntry struct {
	OffloadChannel
	shard  int
	counts OffloadCounters
}

type simOpts struct {
	shards    int
	configure func(*Config)
	users     []string
	secrets   []string
	policy    *relay.PolicyOptions
}

func newSim(t testing.TB, o simOpts) *simNet {
	t.Helper()
	if o.shards == 0 {
		o.shards = 1
	}
	if o.users == nil {
		o.users = []string{"alice=wonderland", "bob=builder"}
	}
	if o.secrets == nil {
		o.secrets = []string{testSecret}
	}
	cfg := Config{
		Realm:                   testRealm,
		Software:                "ferry test",
		DefaultLifetime:         10 * time.Minute,
		MaxLifetime:             time.Hour,
		NonceLifetime:           10 * time.Minute,
		BindNonces:              true,
		RelayV4:                 true,
		RelayV6:                 true,
		RelayMinPort:            40000,
		RelayMax:                49999,
		UserAllocations:         64,
		Permissions:             16,
		Channels:                16,
		UnauthenticatedRate:     600,
		UnauthenticatedBurst:    100,
		AuthFailureRate:         60,
		AuthFailureBurst:        5,
		TrackedIPs:              1024,
		ConnectionIdle:          30 * time.Second,
		MaxIdleConnections:      100,
		MaxIdleConnectionsPerIP: 10,
		Shards:                  o.shards,
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	creds, err := auth.NewSnapshot(testRealm, o.users, o.secrets)
	if err != nil {
		t.Fatal(err)
	}
	po := relay.PolicyOptions{
		Allowed:      []netip.Prefix{peerNet, peerNet6},
		Self:         []netip.Addr{relayIP4, relayIP6, serverAddr.Addr(), server6.Addr()},
		Relays:       []netip.Addr{relayIP4, relayIP6},
		RelayMinPort: cfg.RelayMinPort,
		RelayMaxPort: cfg.RelayMax,
	}
	if o.policy != nil {
		po = *o.policy
	}
	pol, err := relay.NewPolicy(po)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1_800_000_000, 0)
	sh, err := NewShared(cfg, creds, pol, start)
	if err != nil {
		t.Fatal(err)
	}
	s := &simNet{t: t, sh: sh, now: start, kernel: map[[2]netip.AddrPort]*kernelEntry{},
		relays: map[RelayID]netip.AddrPort{}, bound: map[netip.AddrPort]RelayID{},
		nextPort: map[uint8]uint16{4: 40000, 6: 40000}, inbox: map[netip.AddrPort][][]byte{},
		clusterUsers: map[string]int{}}
	for i := range o.shards {
		e, err := New(sh, i)
		if err != nil {
			t.Fatal(err)
		}
		s.eng = append(s.eng, e)
	}
	return s
}

// shardOf steers a 5-tuple to a shard, as SO_REUSEPORT does.
func (s *simNet) shardOf(c *Client) int {
	h := fnv.New32a()
	b := c.Remote.Addr().As16()
	h.Write(b[:])
	h.Write([]byte{byte(c.Remote.Port()), byte(c.Remote.Port() >> 8), byte(c.Transport)})
	return int(h.Sum32() % uint32(len(s.eng)))
}

// advance moves the clock, reports the kernel's counts and runs every
// shard's timers.
func (s *simNet) advance(d time.Duration) {
	s.now = s.now.Add(d)
	for _, k := range s.kernel {
		s.report(k, false)
	}
	for i, e := range s.eng {
		e.Tick(&s.out, s.now)
		s.exec(i)
	}
}

// report hands the kernel's counts of k since the last report to its
// shard, as the data plane does.
func (s *simNet) report(k *kernelEntry, final bool) {
	s.eng[k.shard].OffloadTraffic(&s.out, &k.OffloadChannel, k.counts, final)
	k.counts = OffloadCounters{}
}

// fromClient hands a client packet to the shard its 5-tuple maps to, or
// relays it as the kernel would when its channel is offloaded.
func (s *simNet) fromClient(c *Client, pkt []byte) {
	if c.Transport == UDP && len(pkt) >= 4 && pkt[0]&0xC0 == 0x40 {
		number := uint16(pkt[0])<<8 | uint16(pkt[1])
		n := int(pkt[2])<<8 | int(pkt[3])
		for _, k := range s.kernel {
			if k.Client == c.Remote && k.Listener == c.Local && k.Number == number && s.now.Before(k.Expires) && 4+n <= len(pkt) {
				data := append([]byte(nil), pkt[4:4+n]...)
				k.counts.ToPeerPackets++
				k.counts.ToPeerBytes += uint64(n)
				if s.onCmd != nil {
					s.onCmd(k.shard, Command{Op: OpSendPeer, Relay: k.RelayID, Peer: k.Peer, Data: data})
				}
				s.peerRx = append(s.peerRx, sentToPeer{relay: k.RelayID, from: k.Relay, to: k.Peer, data: string(data), at: s.now})
				return
			}
		}
	}
	i := s.shardOf(c)
	s.eng[i].HandleClient(&s.out, c, append([]byte(nil), pkt...), s.now)
	s.exec(i)
}

// fromPeer sends a datagram from peer to the relay address relay.
func (s *simNet) fromPeer(peer, relayAddr netip.AddrPort, data []byte) bool {
	id, ok := s.bound[relayAddr]
	if !ok {
		return false
	}
	if k := s.kernel[[2]netip.AddrPort{relayAddr, peer}]; k != nil && s.now.Before(k.Expires) {
		msg := append([]byte{byte(k.Number >> 8), byte(k.Number), byte(len(data) >> 8), byte(len(data))}, data...)
		k.counts.FromPeerPackets++
		k.counts.FromPeerBytes += uint64(len(data))
		to := Client{Transport: UDP, Socket: 1, Local: k.Listener, Remote: k.Client}
		if s.onCmd != nil {
			s.onCmd(k.shard, Command{Op: OpSendClient, Client: to, Data: msg})
		}
		s.inbox[k.Client] = append(s.inbox[k.Client], msg)
		return true
	}
	buf := make([]byte, Headroom+len(data)+Tailroom)
	copy(buf[Headroom:], data)
	s.eng[id.Shard()].HandlePeer(&s.out, id, peer, buf, len(data), s.now)
	s.exec(id.Shard())
	return true
}

// exec carries out the queued commands of shard i, feeding outcomes back.
func (s *simNet) exec(i int) {
	for len(s.out.Cmds) > 0 || len(s.out.FastPath) > 0 {
		cmds := append(append([]Command(nil), s.out.FastPath...), s.out.Cmds...)
		for j := range cmds {
			cmds[j].Data = append([]byte(nil), cmds[j].Data...)
		}
		s.out.Reset()
		for _, c := range cmds {
			if s.onCmd != nil {
				s.onCmd(i, c)
			}
			s.execOne(i, c)
		}
	}
}

func (s *simNet) execOne(i int, c Command) {
	e := s.eng[i]
	switch c.Op {
	case OpSendClient:
		s.inbox[c.Client.Remote] = append(s.inbox[c.Client.Remote], c.Data)
	case OpSendPeer:
		from, ok := s.relays[c.Relay]
		if !ok {
			s.t.Errorf("send from relay %v, which is not open", c.Relay)
			return
		}
		s.peerRx = append(s.peerRx, sentToPeer{relay: c.Relay, from: from, to: c.Peer, data: string(c.Data), at: s.now})
	case OpOpenRelay:
		var err error
		if s.failOpen != nil {
			err = s.failOpen(c.Open)
		}
		ip := relayIP4
		if c.Open.Family == 6 {
			ip = relayIP6
		}
		var addr netip.AddrPort
		if err == nil {
			p := s.nextPort[c.Open.Family]
			if c.Open.Even && p%2 == 1 {
				p++
			}
			addr = netip.AddrPortFrom(ip, p)
			s.nextPort[c.Open.Family] = p + 1
			s.relays[c.Relay] = addr
			s.bound[addr] = c.Relay
			if c.Open.Pair != 0 {
				pa := netip.AddrPortFrom(ip, p+1)
				s.relays[c.Open.Pair] = pa
				s.bound[pa] = c.Open.Pair
				s.nextPort[c.Open.Family] = p + 2
			}
		}
		e.RelayOpened(&s.out, c.Relay, addr, err, s.now)
	case OpCloseRelay:
		addr, ok := s.relays[c.Relay]
		if !ok {
			s.t.Errorf("close of relay %v, which is not open", c.Relay)
			return
		}
		delete(s.relays, c.Relay)
		delete(s.bound, addr)
	case OpAdoptRelay:
		addr, ok := s.relays[c.Old]
		if !ok {
			s.t.Errorf("adopt of relay %v, which is not open", c.Old)
			return
		}
		delete(s.relays, c.Old)
		s.eng[c.Old.Shard()].RelayAdopted(c.Old)
		s.relays[c.Relay] = addr
		s.bound[addr] = c.Relay
	case OpConnectPeer:
		s.dials = append(s.dials, c)
	case OpClosePeer:
	case OpJoin:
		s.joins = append(s.joins, c)
	case OpCloseClient:
		s.closed = append(s.closed, c.Client.Socket)
	case OpReroute:
		s.eng[c.Shard].HandleClient(&s.out, &c.Client, c.Data, s.now)
		s.exec(c.Shard)
	case OpOffload:
		key := [2]netip.AddrPort{c.Offload.Relay, c.Offload.Peer}
		if _, open := s.bound[c.Offload.Relay]; !open {
			s.t.Errorf("offload of channel %x on relay %v, which is not open", c.Offload.Number, c.Offload.Relay)
		}
		k := s.kernel[key]
		if k == nil {
			k = &kernelEntry{shard: i}
			s.kernel[key] = k
		}
		k.OffloadChannel = *c.Offload
	case OpUnoffload:
		key := [2]netip.AddrPort{c.Offload.Relay, c.Offload.Peer}
		if k := s.kernel[key]; k != nil {
			s.report(k, true)
			delete(s.kernel, key)
		} else {
			s.eng[i].OffloadTraffic(&s.out, c.Offload, OffloadCounters{}, true)
		}
	case OpEnded:
		s.ended = append(s.ended, *c.Ended)
	case OpCheckUser:
		ok := s.clusterUsers[c.User] < s.clusterQuota
		if ok {
			s.clusterUsers[c.User]++
		}
		e.UserChecked(&s.out, c.Alloc, ok, ok, s.now)
	case OpReleaseUser:
		s.clusterUsers[c.User]--
	default:
		s.t.Errorf("unknown command %d", c.Op)
	}
}

// takeResponse removes and returns the client's answer with transaction ID
// tid, or nil.
func (s *simNet) takeResponse(remote netip.AddrPort, tid [12]byte) *stun.Message {
	box := s.inbox[remote]
	for i, b := range box {
		m := &stun.Message{Raw: b}
		if m.Decode() != nil || m.TransactionID != tid {
			continue
		}
		s.inbox[remote] = append(box[:i:i], box[i+1:]...)
		return m
	}
	return nil
}

// takeData removes and returns the first ChannelData or Data indication
// waiting for remote: the channel (0 for an indication), peer (for an
// indication) and data.
func (s *simNet) takeData(remote netip.AddrPort) (ch uint16, peer netip.AddrPort, data []byte, ok bool) {
	box := s.inbox[remote]
	for i, b := range box {
		if len(b) >= 4 && b[0]&0xC0 == 0x40 {
			s.inbox[remote] = append(box[:i:i], box[i+1:]...)
			n := int(b[2])<<8 | int(b[3])
			return uint16(b[0])<<8 | uint16(b[1]), netip.AddrPort{}, b[4 : 4+n], true
		}
		m := &stun.Message{Raw: b}
		if m.Decode() == nil && m.Type == stun.NewType(stun.MethodData, stun.ClassIndication) {
			s.inbox[remote] = append(box[:i:i], box[i+1:]...)
			var pa stun.XORMappedAddress
			if err := pa.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
				s.t.Errorf("Data indication without XOR-PEER-ADDRESS: %v", err)
			}
			d, _ := m.Get(stun.AttrData)
			ap, _ := netip.AddrFromSlice(pa.IP)
			return 0, netip.AddrPortFrom(ap.Unmap(), uint16(pa.Port)), d, true
		}
	}
	return 0, netip.AddrPort{}, nil, false
}

// simClient is a TURN client in the simulated network.
type simClient struct {
	s        *simNet
	c        Client
	username string
	key      []byte
	nonce    string
	relay    netip.AddrPort
	relays   []netip.AddrPort
	lifetime uint32
}

func (s *simNet) client(transport Transport, remote string, username, password string) *simClient {
	local := serverAddr
	ap := netip.MustParseAddrPort(remote)
	if ap.Addr().Is6() {
		local = server6
	}
	sock := SocketID(1)
	if transport.Connected() {
		h := fnv.New32a()
		h.Write([]byte(remote))
		sock = SocketID(h.Sum32() | 1<<31)
	}
	return &simClient{s: s, c: Client{Transport: transport, Socket: sock, Local: local, Remote: ap},
		username: username, key: stun.NewLongTermIntegrity(username, testRealm, password)}
}

// restClient returns a client with a REST credential for user valid for ttl.
func (s *simNet) restClient(remote, user, secret string, ttl time.Duration) *simClient {
	u, p := auth.Mint(secret, user, ttl, s.now)
	return s.client(UDP, remote, u, p)
}

// raw sends a request built from setters and returns the answer.
func (cl *simClient) raw(t stun.MessageType, setters ...stun.Setter) *stun.Message {
	cl.s.t.Helper()
	m := stun.MustBuild(append([]stun.Setter{stun.TransactionID, t}, setters...)...)
	cl.s.fromClient(&cl.c, m.Raw)
	return cl.s.takeResponse(cl.c.Remote, m.TransactionID)
}

// do sends an authenticated request, answering 401 and 438 challenges as a
// client does (at most twice), and returns the final answer.
func (cl *simClient) do(method stun.Method, setters ...stun.Setter) *stun.Message {
	cl.s.t.Helper()
	for range 3 {
		s := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		s = append(s, setters...)
		if cl.nonce != "" {
			s = append(s, stun.NewUsername(cl.username), stun.NewRealm(testRealm), stun.NewNonce(cl.nonce),
				stun.MessageIntegrity(cl.key))
		}
		s = append(s, stun.Fingerprint)
		m := stun.MustBuild(s...)
		cl.s.fromClient(&cl.c, m.Raw)
		resp := cl.s.takeResponse(cl.c.Remote, m.TransactionID)
		if resp == nil {
			return nil
		}
		code := errorCode(resp)
		if !(code == 401 && cl.nonce == "" || code == 438) {
			return resp
		}
		var n stun.Nonce
		if err := n.GetFrom(resp); err != nil {
			cl.s.t.Fatalf("%d without NONCE", code)
		}
		cl.nonce = string(n)
	}
	cl.s.t.Fatal("challenged three times")
	return nil
}

func errorCode(m *stun.Message) int {
	if m == nil {
		return -1
	}
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return 0
	}
	return int(ec.Code)
}

// verify checks a response's MESSAGE-INTEGRITY with the client's key.
func (cl *simClient) verify(m *stun.Message) error {
	return stun.MessageIntegrity(cl.key).Check(m)
}

func requestedTransport(proto byte) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{proto, 0, 0, 0}}
}

// allocate allocates a UDP relay and fails the test unless it succeeds.
func (cl *simClient) allocate(extra ...stun.Setter) {
	cl.s.t.Helper()
	cl.allocateProto(17, extra...)
}

// allocateProto allocates a relay of protocol proto (17 UDP, 6 TCP).
func (cl *simClient) allocateProto(proto byte, extra ...stun.Setter) {
	cl.s.t.Helper()
	resp := cl.do(stun.MethodAllocate, append([]stun.Setter{requestedTransport(proto)}, extra...)...)
	if code := errorCode(resp); code != 0 {
		cl.s.t.Fatalf("Allocate: error %d", code)
	}
	cl.allocateFrom(resp)
}

// allocateFrom records the relays and lifetime of an Allocate success.
func (cl *simClient) allocateFrom(resp *stun.Message) {
	cl.s.t.Helper()
	if err := cl.verify(resp); err != nil {
		cl.s.t.Fatalf("Allocate success not signed with the client's key: %v", err)
	}
	cl.relays = nil
	for _, a := range resp.Attributes {
		if a.Type != stun.AttrXORRelayedAddress {
			continue
		}
		var x stun.XORMappedAddress
		m := &stun.Message{TransactionID: resp.TransactionID}
		m.Add(stun.AttrXORRelayedAddress, a.Value)
		if err := x.GetFromAs(m, stun.AttrXORRelayedAddress); err != nil {
			cl.s.t.Fatal(err)
		}
		ip, _ := netip.AddrFromSlice(x.IP)
		cl.relays = append(cl.relays, netip.AddrPortFrom(ip.Unmap(), uint16(x.Port)))
	}
	if len(cl.relays) == 0 {
		cl.s.t.Fatal("Allocate success without XOR-RELAYED-ADDRESS")
	}
	cl.relay = cl.relays[0]
	if v, err := resp.Get(stun.AttrLifetime); err == nil && len(v) == 4 {
		cl.lifetime = uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	}
}

// xorPeer is XOR-PEER-ADDRESS for ap.
type xorPeer netip.AddrPort

func (p xorPeer) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(p)
	x := stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
	return x.AddToAs(m, stun.AttrXORPeerAddress)
}

func channelNumber(n uint16) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(n >> 8), byte(n), 0, 0}}
}

func lifetime(s uint32) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}}
}

func (cl *simClient) mustOK(what string, m *stun.Message) {
	cl.s.t.Helper()
	if code := errorCode(m); code != 0 {
		cl.s.t.Fatalf("%s: error %d", what, code)
	}
	if err := cl.verify(m); err != nil {
		cl.s.t.Fatalf("%s: success not signed: %v", what, err)
	}
}

func (cl *simClient) permit(peers ...netip.AddrPort) *stun.Message {
	var s []stun.Setter
	for _, p := range peers {
		s = append(s, xorPeer(p))
	}
	return cl.do(stun.MethodCreatePermission, s...)
}

func (cl *simClient) bind(n uint16, peer netip.AddrPort) *stun.Message {
	return cl.do(stun.MethodChannelBind, channelNumber(n), xorPeer(peer))
}

// send sends a Send indication.
func (cl *simClient) send(peer netip.AddrPort, data string) {
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeer(peer), stun.RawAttribute{Type: stun.AttrData, Value: []byte(data)})
	cl.s.fromClient(&cl.c, m.Raw)
}

// channelData sends ChannelData.
func (cl *simClient) channelData(n uint16, data string) {
	b := []byte{byte(n >> 8), byte(n), byte(len(data) >> 8), byte(len(data))}
	cl.s.fromClient(&cl.c, append(b, data...))
}

// takePeer removes and returns the datagrams sent to peer.
func (s *simNet) takePeer(peer netip.AddrPort) []sentToPeer {
	var got, rest []sentToPeer
	for _, p := range s.peerRx {
		if p.to == peer {
			got = append(got, p)
		} else {
			rest = append(rest, p)
		}
	}
	s.peerRx = rest
	return got
}

func (s *simNet) stats() Snapshot { return s.sh.Stats() }

func peer(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), uint16(5000+i))
}

var errBindFailed = errors.New("bind: address already in use")

func (cl *simClient) String() string { return fmt.Sprintf("%s %s", cl.c.Transport, cl.c.Remote) }
