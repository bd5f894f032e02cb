package relay

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// TestEndToEnd runs pion's TURN server with ferry's PortAllocator and
// PermissionHandler on 127.0.0.1 and a pion client against it.
func TestEndToEnd(t *testing.T) {
	const realm, user, pass = "ferry.test", "alice", "secret"
	tests := []struct {
		name          string
		allowLoopback bool
		self          []netip.Addr
		wantCode      stun.ErrorCode // 0: permission granted, packet round-trips
		wantReason    string
	}{
		{name: "loopback refused", wantCode: stun.CodeForbidden, wantReason: "loopback"},
		{name: "self refused", self: []netip.Addr{lo4}, wantCode: stun.CodeForbidden, wantReason: "self"},
		{name: "loopback allowed", allowLoopback: true, self: []netip.Addr{lo4, ext4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			pionLog := testutil.PionLogger(t)

			policy := mustPolicy(t, PolicyOptions{AllowLoopback: tt.allowLoopback, Self: tt.self})
			lo, hi := testutil.FreePortRange(t, lo4, 10)
			ports := newAllocator(t, lo4, ext4, lo, hi, policy)
			var mu sync.Mutex
			var denied []string
			perm := NewPermissionHandler(policy, testutil.Logger(t), func(r string) {
				mu.Lock()
				denied = append(denied, r)
				mu.Unlock()
			})

			srvConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv, err := turn.NewServer(turn.ServerConfig{
				Realm:         realm,
				LoggerFactory: pionLog,
				AuthHandler: func(ra *turn.RequestAttributes) (string, []byte, bool) {
					if ra.Username != user {
						return "", nil, false
					}
					return user, turn.GenerateAuthKey(user, realm, pass), true
				},
				PacketConnConfigs: []turn.PacketConnConfig{{
					PacketConn:            srvConn,
					RelayAddressGenerator: ports,
					PermissionHandler:     perm,
				}},
			})
			if err != nil {
				_ = srvConn.Close()
				t.Fatalf("turn.NewServer: %v", err)
			}

			// The peer echoes every datagram back to its sender.
			peer, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo4, 0)))
			if err != nil {
				t.Fatal(err)
			}
			type datagram struct {
				from netip.AddrPort
				data string
			}
			peerGot := make(chan datagram, 4)
			peerDone := make(chan struct{})
			go func() {
				defer close(peerDone)
				buf := make([]byte, 1500)
				for {
					n, from, err := peer.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					peerGot <- datagram{from, string(buf[:n])}
					_, _ = peer.WriteToUDPAddrPort(buf[:n], from)
				}
			}()

			clientConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			client, err := turn.NewClient(&turn.ClientConfig{
				STUNServerAddr: srvConn.LocalAddr().String(),
				TURNServerAddr: srvConn.LocalAddr().String(),
				Conn:           clientConn,
				Username:       user,
				Password:       pass,
				Realm:          realm,
				LoggerFactory:  pionLog,
			})
			if err != nil {
				t.Fatalf("turn.NewClient: %v", err)
			}
			if err := client.Listen(); err != nil {
				t.Fatalf("client.Listen: %v", err)
			}
			relayConn, err := client.Allocate()
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}

			defer func() {
				_ = relayConn.Close()
				client.Close()
				_ = clientConn.Close()
				if err := srv.Close(); err != nil {
					t.Errorf("server Close: %v", err)
				}
				_ = peer.Close()
				<-peerDone
				testutil.CheckGoroutines(t, before)
			}()

			// XOR-RELAYED-ADDRESS carries the advertised address.
			relayAddr := relayConn.LocalAddr().(*net.UDPAddr).AddrPort()
			if relayAddr.Addr().Unmap() != ext4 || relayAddr.Port() < lo || relayAddr.Port() > hi {
				t.Fatalf("relayed address %s, want %s with a port in %d-%d", relayAddr, ext4, lo, hi)
			}
			peerAddr := peer.LocalAddr()

			if tt.wantCode != 0 {
				err := client.CreatePermission(peerAddr)
				var te *stun.TurnError
				if !errors.As(err, &te) {
					t.Fatalf("CreatePermission error = %v, want a TURN error response", err)
				}
				if te.ErrorCodeAttr.Code != tt.wantCode {
					t.Fatalf("CreatePermission answered %d, want %d", te.ErrorCodeAttr.Code, tt.wantCode)
				}
				mu.Lock()
				got := slices.Clone(denied)
				mu.Unlock()
				if !slices.Equal(got, []string{tt.wantReason}) {
					t.Errorf("denials counted %v, want [%s]", got, tt.wantReason)
				}
				select {
				case d := <-peerGot:
					t.Fatalf("denied peer received %q", d.data)
				case <-time.After(100 * time.Millisecond):
				}
				return
			}

			// WriteTo creates the permission, then sends through the relay.
			if _, err := relayConn.WriteTo([]byte("hello"), peerAddr); err != nil {
				t.Fatalf("relay WriteTo: %v", err)
			}
			select {
			case d := <-peerGot:
				want := netip.AddrPortFrom(lo4, relayAddr.Port())
				if d.data != "hello" || d.from != want {
					t.Fatalf("peer got %q from %s, want %q from relay %s", d.data, d.from, "hello", want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("peer received nothing")
			}
			_ = relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1500)
			n, from, err := relayConn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("relay ReadFrom: %v", err)
			}
			if string(buf[:n]) != "hello" || from.String() != peerAddr.String() {
				t.Fatalf("client got %q from %s, want echo from %s", buf[:n], from, peerAddr)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(denied) != 0 {
				t.Errorf("unexpected denials %v", denied)
			}
		})
	}
}
