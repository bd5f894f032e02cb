package engine

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func TestTCPAllocationRules(t *testing.T) {
	s := newSim(t, simOpts{})
	udp := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
	// Regression 15: a TCP relay over UDP is a 400.
	if code := errorCode(udp.do(stun.MethodAllocate, requestedTransport(6))); code != 400 {
		t.Fatalf("TCP allocation over UDP: %d", code)
	}
	if code := errorCode(udp.do(stun.MethodAllocate, requestedTransport(99))); code != 442 {
		t.Fatalf("unknown transport: %d", code)
	}
	cl := s.client(TCP, "198.51.100.1:1001", "alice", "wonderland")
	if !s.eng[0].StreamOpened(&cl.c, s.now) {
		t.Fatal("connection refused")
	}
	if code := errorCode(cl.do(stun.MethodAllocate, requestedTransport(6), stun.RawAttribute{Type: stun.AttrDontFragment})); code != 400 {
		t.Fatalf("TCP allocation with DONT-FRAGMENT: %d", code)
	}
	cl.allocateProto(6)
}

func TestTCPConnect(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(TCP, "198.51.100.1:1001", "alice", "wonderland")
	s.eng[0].StreamOpened(&cl.c, s.now)
	resp := cl.do(stun.MethodAllocate, requestedTransport(6))
	cl.mustOK("TCP Allocate", resp)
	tests := []struct {
		name string
		peer netip.AddrPort
		code int
	}{
		{"port 0", netip.AddrPortFrom(peer(1).Addr(), 0), 400},
		{"private", netip.MustParseAddrPort("10.1.1.1:80"), 403},
		// Regression 6: ferry's own relay address outside the relay ports.
		{"own relay address, listener port", netip.AddrPortFrom(relayIP4, 3478), 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := errorCode(cl.do(stun.MethodConnect, xorPeer(tt.peer))); code != tt.code {
				t.Fatalf("Connect: %d, want %d", code, tt.code)
			}
		})
	}
	// A successful Connect: the answer waits for the dial.
	p := peer(1)
	m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodConnect, stun.ClassRequest), xorPeer(p),
		stun.NewUsername(cl.username), stun.NewRealm(testRealm), stun.NewNonce(cl.nonce), stun.MessageIntegrity(cl.key))
	s.fromClient(&cl.c, m.Raw)
	if len(s.dials) != 1 || s.dials[0].Peer != p {
		t.Fatalf("dials %+v", s.dials)
	}
	if code := errorCode(cl.do(stun.MethodConnect, xorPeer(p))); code != 446 {
		t.Fatalf("second Connect to the same peer: %d", code)
	}
	id := s.dials[0].Conn
	s.eng[0].PeerConnected(&s.out, id, nil, s.now)
	s.exec(0)
	resp = s.takeResponse(cl.c.Remote, m.TransactionID)
	cl.mustOK("Connect", resp)
	v, err := resp.Get(stun.AttrConnectionID)
	if err != nil || len(v) != 4 {
		t.Fatal("no CONNECTION-ID")
	}
	// ConnectionBind on a new connection, with the control connection's nonce.
	data := s.client(TCP, "198.51.100.1:1002", "alice", "wonderland")
	s.eng[0].StreamOpened(&data.c, s.now)
	data.nonce = cl.nonce
	bind := data.do(stun.MethodConnectionBind, stun.RawAttribute{Type: stun.AttrConnectionID, Value: v})
	data.mustOK("ConnectionBind", bind)
	if len(s.joins) != 1 || s.joins[0].Conn != id || s.joins[0].Client.Socket != data.c.Socket {
		t.Fatalf("joins %+v", s.joins)
	}
	// A failed dial answers 447.
	p2 := peer(2)
	m2 := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodConnect, stun.ClassRequest), xorPeer(p2),
		stun.NewUsername(cl.username), stun.NewRealm(testRealm), stun.NewNonce(cl.nonce), stun.MessageIntegrity(cl.key))
	s.fromClient(&cl.c, m2.Raw)
	s.eng[0].PeerConnected(&s.out, s.dials[1].Conn, errors.New("refused"), s.now)
	s.exec(0)
	if code := errorCode(s.takeResponse(cl.c.Remote, m2.TransactionID)); code != 447 {
		t.Fatalf("failed dial: %d", code)
	}
}

func TestTCPPeerAccepted(t *testing.T) {
	s := newSim(t, simOpts{})
	cl := s.client(TCP, "198.51.100.1:1001", "alice", "wonderland")
	s.eng[0].StreamOpened(&cl.c, s.now)
	cl.allocateProto(6)
	relay := s.bound[cl.relay]
	p := peer(3)
	if _, ok := s.eng[0].PeerAccepted(&s.out, relay, p, s.now); ok {
		t.Fatal("peer without permission accepted")
	}
	cl.mustOK("CreatePermission on a TCP allocation", cl.permit(p))
	id, ok := s.eng[0].PeerAccepted(&s.out, relay, p, s.now)
	if !ok {
		t.Fatal("permitted peer refused")
	}
	s.exec(0)
	var attempt *stun.Message
	for _, b := range s.inbox[cl.c.Remote] {
		m := &stun.Message{Raw: b}
		if m.Decode() == nil && m.Type == stun.NewType(stun.MethodConnectionAttempt, stun.ClassIndication) {
			attempt = m
		}
	}
	if attempt == nil {
		t.Fatal("no ConnectionAttempt indication")
	}
	// Nobody binds it: closed after 30 s.
	var closedPeers []uint32
	s.onCmd = func(_ int, c Command) {
		if c.Op == OpClosePeer {
			closedPeers = append(closedPeers, c.Conn)
		}
	}
	s.advance(31 * time.Second)
	if len(closedPeers) != 1 || closedPeers[0] != id {
		t.Fatalf("closed peers %v, want [%d]", closedPeers, id)
	}
}

// Regression 9: connections without an allocation are bounded in time and
// number, also after a Binding.
func TestIdleConnectionsBounded(t *testing.T) {
	s := newSim(t, simOpts{configure: func(c *Config) { c.MaxIdleConnectionsPerIP = 3; c.MaxIdleConnections = 5 }})
	e := s.eng[0]
	var cls []*simClient
	for i := range 3 {
		cl := s.client(TCP, netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(2000+i)).String(), "alice", "wonderland")
		if !e.StreamOpened(&cl.c, s.now) {
			t.Fatalf("connection %d refused", i)
		}
		cls = append(cls, cl)
	}
	extra := s.client(TCP, "198.51.100.1:2999", "", "")
	if e.StreamOpened(&extra.c, s.now) {
		t.Fatal("fourth idle connection from one address accepted")
	}
	cls[0].raw(stun.BindingRequest)
	cls[1].allocate()
	s.advance(31 * time.Second)
	closed := map[SocketID]bool{}
	for _, sock := range s.closed {
		closed[sock] = true
	}
	if !closed[cls[0].c.Socket] || !closed[cls[2].c.Socket] || closed[cls[1].c.Socket] {
		t.Fatalf("closed %v; want the Binding-only and silent connections closed, the allocating one kept", s.closed)
	}
	// Its allocation ends when the connection closes.
	e.StreamClosed(&s.out, &cls[1].c, s.now)
	s.exec(0)
	if s.sh.Allocations() != 0 || s.stats().Ended[EndClient] != 1 {
		t.Fatalf("allocations %d ended %v", s.sh.Allocations(), s.stats().Ended)
	}
}
