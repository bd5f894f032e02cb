package bench

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v3"
)

// Credentials are long-term credentials for one client.
type Credentials struct {
	User, Password string
}

// RESTCredentials mints a TURN REST API credential: username
// "<expiry unix>:<user>" (just "<expiry>" without a user), password
// base64(HMAC-SHA1(secret, username)).
func RESTCredentials(secret, user string, expiry time.Time) Credentials {
	name := strconv.FormatInt(expiry.Unix(), 10)
	if user != "" {
		name += ":" + user
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(name))
	return Credentials{User: name, Password: base64.StdEncoding.EncodeToString(mac.Sum(nil))}
}

// ResponseError is a STUN error response to one of the generator's
// requests.
type ResponseError struct {
	Method string
	Code   int
	Reason string
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("%s: error response %d %s", e.Method, e.Code, e.Reason)
}

const (
	udpRTO     = 250 * time.Millisecond
	maxRTO     = 2 * time.Second
	stunBufLen = 1600
)

// session is one TURN client: a connected UDP socket or a TCP connection
// to the server, and the long-term credential state learnt from the 401
// challenge. Its methods are synchronous and used by one goroutine.
type session struct {
	conn   net.Conn
	tcp    bool
	frames *framer // tcp only
	rbuf   []byte  // udp only, made at the first read (idle mode drops it)

	creds Credentials
	realm string // wanted realm; "" takes the server's
	// Set from the first 401.
	username  stun.Username
	realmAttr stun.Realm
	nonce     stun.Nonce
	integrity stun.MessageIntegrity
}

// dialSession opens a client connection to server over transport, from
// local (any address when invalid).
func dialSession(ctx context.Context, transport string, server netip.AddrPort, local netip.Addr, creds Credentials, realm string) (*session, error) {
	var d net.Dialer
	if local.IsValid() {
		if transport == "tcp" {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: local.AsSlice()}
		}
	}
	c, err := d.DialContext(ctx, transport, server.String())
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", transport, server, err)
	}
	s := &session{conn: c, tcp: transport == "tcp", creds: creds, realm: realm}
	if s.tcp {
		s.frames = newFramer(c)
	}
	return s, nil
}

func (s *session) close() error { return s.conn.Close() }

// setter adapts a func to stun.Setter.
type setter func(m *stun.Message) error

func (f setter) AddTo(m *stun.Message) error { return f(m) }

func requestedTransportUDP() stun.Setter {
	return setter(func(m *stun.Message) error {
		m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0}) // UDP, RFFU
		return nil
	})
}

func lifetimeAttr(d time.Duration) stun.Setter {
	return setter(func(m *stun.Message) error {
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], uint32(d/time.Second))
		m.Add(stun.AttrLifetime, v[:])
		return nil
	})
}

func channelNumberAttr(ch uint16) stun.Setter {
	return setter(func(m *stun.Message) error {
		m.Add(stun.AttrChannelNumber, []byte{byte(ch >> 8), byte(ch), 0, 0})
		return nil
	})
}

func peerAttr(peer netip.AddrPort) stun.Setter {
	return setter(func(m *stun.Message) error {
		a := stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}
		return a.AddToAs(m, stun.AttrXORPeerAddress)
	})
}

// request sends a request of method with attrs, answering a 401 challenge
// once and a 438 stale nonce up to twice, and returns the success
// response.
func (s *session) request(ctx context.Context, method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	name := method.String()
	for range 4 {
		authed := s.nonce != nil
		setters := make([]stun.Setter, 0, len(attrs)+7)
		setters = append(setters, stun.TransactionID, stun.NewType(method, stun.ClassRequest))
		setters = append(setters, attrs...)
		if authed {
			setters = append(setters, &s.username, &s.realmAttr, &s.nonce, s.integrity)
		}
		setters = append(setters, stun.Fingerprint)
		req, err := stun.Build(setters...)
		if err != nil {
			return nil, fmt.Errorf("%s: build: %w", name, err)
		}
		res, err := s.roundTrip(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if res.Type.Class == stun.ClassSuccessResponse {
			return res, nil
		}
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(res); err != nil {
			return nil, fmt.Errorf("%s: error response without ERROR-CODE: %w", name, err)
		}
		switch {
		case code.Code == stun.CodeUnauthorized && !authed, code.Code == stun.CodeStaleNonce:
			if err := s.challenge(res); err != nil {
				return nil, fmt.Errorf("%s: %d challenge: %w", name, code.Code, err)
			}
			continue
		}
		// Some servers pad the reason with NULs (coturn 4.6).
		return nil, &ResponseError{Method: name, Code: int(code.Code), Reason: strings.TrimRight(string(code.Reason), "\x00")}
	}
	return nil, fmt.Errorf("%s: still challenged after 4 tries", name)
}

// challenge takes NONCE (and REALM, the first time) from a 401 or 438.
func (s *session) challenge(res *stun.Message) error {
	var nonce stun.Nonce
	if err := nonce.GetFrom(res); err != nil {
		return fmt.Errorf("NONCE: %w", err)
	}
	s.nonce = nonce
	if s.integrity != nil {
		return nil
	}
	var realm stun.Realm
	if err := realm.GetFrom(res); err != nil {
		return fmt.Errorf("REALM: %w", err)
	}
	if s.realm != "" && s.realm != realm.String() {
		return fmt.Errorf("server realm %q, want %q", realm, s.realm)
	}
	s.realmAttr = realm
	s.username = stun.NewUsername(s.creds.User)
	s.integrity = stun.NewLongTermIntegrity(s.creds.User, realm.String(), s.creds.Password)
	return nil
}

// roundTrip writes req and returns the response with its transaction ID,
// retransmitting over UDP (RFC 8489 style, RTO doubling) until ctx ends.
func (s *session) roundTrip(ctx context.Context, req *stun.Message) (*stun.Message, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(10 * time.Second)
	}
	rto := udpRTO
	for {
		if _, err := s.conn.Write(req.Raw); err != nil {
			return nil, fmt.Errorf("write to %s: %w", s.conn.RemoteAddr(), err)
		}
		wait := deadline
		if !s.tcp {
			if next := time.Now().Add(rto); next.Before(deadline) {
				wait = next
			}
			rto = min(2*rto, maxRTO)
		}
		if err := s.conn.SetReadDeadline(wait); err != nil {
			return nil, err
		}
		res, err := s.readResponse(req.TransactionID)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
		if err := ctx.Err(); err != nil || !time.Now().Before(deadline) {
			return nil, fmt.Errorf("no response from %s: %w", s.conn.RemoteAddr(), context.DeadlineExceeded)
		}
	}
}

// readResponse reads until a STUN message with transaction ID id arrives,
// skipping anything else.
func (s *session) readResponse(id [stun.TransactionIDSize]byte) (*stun.Message, error) {
	for {
		b, err := s.readFrame()
		if err != nil {
			return nil, err
		}
		if !stun.IsMessage(b) {
			continue
		}
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if err := m.Decode(); err != nil || m.TransactionID != id {
			continue
		}
		return m, nil
	}
}

func (s *session) readFrame() ([]byte, error) {
	if !s.tcp {
		if s.rbuf == nil {
			s.rbuf = make([]byte, stunBufLen)
		}
		n, err := s.conn.Read(s.rbuf)
		if err != nil {
			return nil, fmt.Errorf("read from %s: %w", s.conn.RemoteAddr(), err)
		}
		return s.rbuf[:n], nil
	}
	for {
		b, err := s.frames.next()
		if err != nil {
			return nil, err
		}
		if b != nil {
			return b, nil
		}
		if err := s.frames.fill(); err != nil {
			return nil, fmt.Errorf("read from %s: %w", s.conn.RemoteAddr(), err)
		}
	}
}

// codeAllocMismatch is 437 Allocation Mismatch.
const codeAllocMismatch = 437

// dialAllocate opens a client connection and allocates a UDP relay. When
// the server answers 437, it still holds an allocation for this 5-tuple: the
// kernel handed out the port of one released moments ago, which a server
// may keep for a while. Then it tries again from a new socket (twice at
// most), keeping the refused one open meanwhile so that its port is not
// handed out again.
func dialAllocate(ctx context.Context, transport string, server netip.AddrPort, local netip.Addr, creds Credentials, realm string) (*session, netip.AddrPort, error) {
	var refused *session
	defer func() {
		if refused != nil {
			_ = refused.close()
		}
	}()
	for attempt := 0; ; attempt++ {
		s, err := dialSession(ctx, transport, server, local, creds, realm)
		if err != nil {
			return nil, netip.AddrPort{}, err
		}
		relayed, err := s.allocate(ctx)
		if err == nil {
			return s, relayed, nil
		}
		if refused != nil {
			_ = refused.close()
		}
		refused = s
		var re *ResponseError
		if attempt >= 2 || !errors.As(err, &re) || re.Code != codeAllocMismatch {
			return nil, netip.AddrPort{}, err
		}
	}
}

// allocate requests a UDP relay and returns its address.
func (s *session) allocate(ctx context.Context) (netip.AddrPort, error) {
	res, err := s.request(ctx, stun.MethodAllocate, requestedTransportUDP())
	if err != nil {
		return netip.AddrPort{}, err
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return netip.AddrPort{}, fmt.Errorf("allocate response: XOR-RELAYED-ADDRESS: %w", err)
	}
	ip, ok := netip.AddrFromSlice(relayed.IP)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("allocate response: XOR-RELAYED-ADDRESS %v", relayed.IP)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(relayed.Port)), nil
}

// permit installs a permission for peer and binds channel ch to it.
func (s *session) permit(ctx context.Context, peer netip.AddrPort, ch uint16) error {
	if _, err := s.request(ctx, stun.MethodCreatePermission, peerAttr(peer)); err != nil {
		return err
	}
	_, err := s.request(ctx, stun.MethodChannelBind, channelNumberAttr(ch), peerAttr(peer))
	return err
}

// release deletes the allocation (Refresh with LIFETIME 0).
func (s *session) release(ctx context.Context) error {
	_, err := s.request(ctx, stun.MethodRefresh, lifetimeAttr(0))
	return err
}
