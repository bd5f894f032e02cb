package dataplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// tcpEchoPeer is a TCP peer on 127.0.0.1 that echoes every byte.
func tcpEchoPeer(t *testing.T) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}

// echoThrough writes msg on c and expects it back.
func echoThrough(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write through the relay: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read through the relay: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("got %q through the relay, want %q", got, msg)
	}
}

// readFrame reads one STUN message from a stream.
func readFrame(t *testing.T, c net.Conn) *stun.Message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	hdr := make([]byte, 20)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("read STUN header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("read STUN body: %v", err)
	}
	m := &stun.Message{Raw: append(hdr, body...)}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	return m
}

type connectionID uint32

func (c connectionID) AddTo(m *stun.Message) error {
	m.Add(stun.AttrConnectionID, binary.BigEndian.AppendUint32(nil, uint32(c)))
	return nil
}

// connectionBind turns c, a fresh connection to ferry, into the data
// connection of cid with raw STUN (the 401 challenge, then the
// authenticated ConnectionBind): what pion's client cannot do over TLS.
func connectionBind(t *testing.T, c net.Conn, cid uint32) {
	t.Helper()
	typ := stun.NewType(stun.MethodConnectionBind, stun.ClassRequest)
	if _, err := c.Write(stun.MustBuild(stun.TransactionID, typ, connectionID(cid)).Raw); err != nil {
		t.Fatal(err)
	}
	res := readFrame(t, c)
	var nonce stun.Nonce
	if err := nonce.GetFrom(res); err != nil || errorCode(res) != 401 {
		t.Fatalf("ConnectionBind challenge: code %d, nonce %v", errorCode(res), err)
	}
	req := stun.MustBuild(stun.TransactionID, typ, connectionID(cid), stun.NewUsername(testUser),
		stun.NewRealm(testRealm), nonce, stun.NewLongTermIntegrity(testUser, testRealm, testPass), stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	if res := readFrame(t, c); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("ConnectionBind: %v code %d", res.Type, errorCode(res))
	}
}

// TestTCPRelay allocates RFC 6062 TCP relays with pion's client over TCP
// and TLS and relays both ways: a Connect to a TCP echo peer, and a peer
// connecting in (ConnectionAttempt, then ConnectionBind).
func TestTCPRelay(t *testing.T) {
	for _, tr := range []string{"tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			f := startServer(t, fixtureOpts{allowLoopback: true, withTLS: true})
			c := f.client(t, tr, testUser, testPass)
			alloc, err := c.AllocateTCP()
			if err != nil {
				t.Fatalf("AllocateTCP: %v", err)
			}
			defer alloc.Close()
			relayAddr := alloc.Addr().(*net.TCPAddr)
			if !relayAddr.IP.IsLoopback() || relayAddr.Port < 40000 || relayAddr.Port > 49999 {
				t.Fatalf("relayed address %s", relayAddr)
			}
			peer := tcpEchoPeer(t)

			// Outbound: Connect, then a data connection bound to it.
			var data net.Conn
			if tr == "tcp" {
				data, err = alloc.DialTCP("tcp4", nil, peer)
				if err != nil {
					t.Fatalf("DialTCP through the relay: %v", err)
				}
			} else {
				cid, err := alloc.Connect(peer)
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				data, err = tls.Dial("tcp", f.tls.String(), &tls.Config{RootCAs: f.certs, ServerName: "ferry.test", MinVersion: tls.VersionTLS12})
				if err != nil {
					t.Fatal(err)
				}
				connectionBind(t, data, uint32(cid))
			}
			defer data.Close()
			for i := range 20 {
				echoThrough(t, data, bytes.Repeat([]byte{byte('a' + i)}, 100*(i+1)))
			}
			// Bytes that look like STUN pass through untouched.
			echoThrough(t, data, stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
				&stun.ErrorCodeAttribute{Code: 401}, stun.Fingerprint).Raw)

			if tr != "tcp" {
				return // pion's client accepts peer connections over plain TCP only
			}
			// Inbound: a peer connects to the relayed address (DialTCP made
			// the permission for 127.0.0.1).
			accepted := make(chan net.Conn, 1)
			acceptErr := make(chan error, 1)
			go func() {
				_ = alloc.SetDeadline(time.Now().Add(5 * time.Second))
				ac, err := alloc.AcceptTCP()
				if err != nil {
					acceptErr <- err
					return
				}
				accepted <- ac
			}()
			p, err := net.DialTimeout("tcp4", relayAddr.String(), 5*time.Second)
			if err != nil {
				t.Fatalf("peer dial to relay: %v", err)
			}
			defer p.Close()
			var ac net.Conn
			select {
			case ac = <-accepted:
			case err := <-acceptErr:
				t.Fatalf("AcceptTCP: %v", err)
			}
			defer ac.Close()
			if _, err := p.Write([]byte("from the peer")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 13)
			_ = ac.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(ac, buf); err != nil || string(buf) != "from the peer" {
				t.Fatalf("client read %q, %v", buf, err)
			}
			if st := f.srv.Stats(); st.ToPeerBytes < 21000 || st.FromPeerBytes < 21000 {
				t.Errorf("TCP relay bytes counted: to peer %d, from peer %d", st.ToPeerBytes, st.FromPeerBytes)
			}
		})
	}
}

// TestTCPConnectDenied: a Connect to a peer the policy refuses gets 403,
// over TCP and TLS, and nothing is dialed.
func TestTCPConnectDenied(t *testing.T) {
	for _, tr := range []string{"tcp", "tls"} {
		for _, tc := range []struct {
			peer string
			code int
		}{
			{"127.0.0.2", 403},
			{"10.0.0.1", 403},
			{"169.254.169.254", 403},
			{"::ffff:192.168.1.1", 403},
			// 127.0.0.1 is the fixture's relay address: admitted as a
			// peer only on relay ports, and port 80 is not one: 403
			// (regression 6).
			{"127.0.0.1", 403},
		} {
			t.Run(tr+"/"+tc.peer, func(t *testing.T) {
				f := startServer(t, fixtureOpts{withTLS: true})
				rc := newRawClientWith(t, f, tr, requestedTCP{})
				res := rc.do(stun.MethodConnect, peerAddr{net.ParseIP(tc.peer), 80})
				if got := errorCode(res); got != tc.code {
					t.Fatalf("Connect to %s: code %d, want %d", tc.peer, got, tc.code)
				}
			})
		}
	}
}

// TestDTLSAllocateAndRelay: a pion/dtls client allocates over dtls:// and
// relays UDP both ways.
func TestDTLSAllocateAndRelay(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: true, withDTLS: true})
	c := f.client(t, "dtls", testUser, testPass)
	relayConn, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate over DTLS: %v", err)
	}
	defer relayConn.Close()
	relayRoundTrips(t, relayConn, testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr(), 20)
}

// TestCertificateReload swaps the certificate on disk while an allocation
// over TLS relays: the next TLS and DTLS clients get the new certificate,
// the allocation keeps relaying.
func TestCertificateReload(t *testing.T) {
	f := startServer(t, fixtureOpts{allowLoopback: true, withTLS: true, withDTLS: true})
	c := f.client(t, "tls", testUser, testPass)
	relayConn, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	peer := testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr()
	relayRoundTrips(t, relayConn, peer, 3)
	before := servedCerts(t, f, f.certs)

	// A new key and certificate, written over the old files.
	newCert := testutil.SelfSigned(t)
	for _, cp := range [][2]string{{newCert.CertFile, f.certFile}, {newCert.KeyFile, f.keyFile}} {
		b, err := os.ReadFile(cp[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cp[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What cli's watcher does every few seconds (and SIGHUP at once).
	future := time.Now().Add(time.Minute)
	_ = os.Chtimes(f.certFile, future, future)
	if changed, err := f.store.ReloadIfChanged(); err != nil || !changed {
		t.Fatalf("ReloadIfChanged = %v, %v", changed, err)
	}
	after := servedCerts(t, f, newCert.Pool)
	for _, tr := range []string{"tls", "dtls"} {
		if bytes.Equal(before[tr], after[tr]) {
			t.Errorf("%s still serves the old certificate", tr)
		}
	}
	// The allocation made before the swap still relays, and a client
	// trusting only the old certificate is refused.
	relayRoundTrips(t, relayConn, peer, 3)
	if _, err := tls.Dial("tcp", f.tls.String(), &tls.Config{RootCAs: f.certs, ServerName: "ferry.test", MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS client trusting the old certificate connected after the swap")
	}
	// A DTLS client allocates with the new certificate.
	f.certs = newCert.Pool
	dc := f.client(t, "dtls", testUser, testPass)
	rc, err := dc.Allocate()
	if err != nil {
		t.Fatalf("allocate over DTLS after the swap: %v", err)
	}
	defer rc.Close()
	relayRoundTrips(t, rc, peer, 3)
}

// servedCerts returns the leaf certificate each of TLS and DTLS serves to a
// new client trusting pool.
func servedCerts(t *testing.T, f *fixture, pool *x509.CertPool) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tc, err := tls.Dial("tcp", f.tls.String(), &tls.Config{RootCAs: pool, ServerName: "ferry.test", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	out["tls"] = tc.ConnectionState().PeerCertificates[0].Raw
	_ = tc.Close()
	dc, err := dtls.DialWithOptions("udp4", f.dtls.(*net.UDPAddr), dtls.WithRootCAs(pool), dtls.WithServerName("ferry.test"),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret))
	if err != nil {
		t.Fatalf("DTLS dial: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		t.Fatalf("DTLS handshake: %v", err)
	}
	st, _ := dc.ConnectionState()
	out["dtls"] = st.PeerCertificates[0]
	_ = dc.Close()
	return out
}

type requestedTCP struct{}

func (requestedTCP) AddTo(m *stun.Message) error {
	m.Add(stun.AttrRequestedTransport, []byte{6, 0, 0, 0})
	return nil
}

// newRawClientWith is newRawClient with the Allocate attributes given
// (REQUESTED-TRANSPORT and more).
func newRawClientWith(t *testing.T, f *fixture, transport string, allocAttrs ...stun.Setter) *rawClient {
	t.Helper()
	conn, to := f.clientConn(t, transport)
	rc := &rawClient{t: t, conn: conn, to: to, user: stun.NewUsername(testUser), realm: stun.NewRealm(testRealm)}
	rc.integ = stun.NewLongTermIntegrity(testUser, testRealm, testPass)
	res := roundTrip(t, conn, to, stun.MustBuild(append([]stun.Setter{stun.TransactionID,
		stun.NewType(stun.MethodAllocate, stun.ClassRequest)}, append(allocAttrs, stun.Fingerprint)...)...))
	if err := rc.nonce.GetFrom(res); err != nil {
		t.Fatalf("no NONCE in the 401 challenge: %v", err)
	}
	res = rc.do(stun.MethodAllocate, allocAttrs...)
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("allocate: code %d", errorCode(res))
	}
	return rc
}
