package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/pion/stun/v3"
)

// Credentials are long-term TURN credentials.
type Credentials struct {
	Username, Password string
	// Realm, if set, is used instead of the realm the server announces.
	Realm string
}

// Allocation is a granted allocation.
type Allocation struct {
	Relayed  netip.AddrPort
	Mapped   netip.AddrPort
	Lifetime time.Duration
}

// Client is a minimal UDP TURN client (RFC 8656) on one socket, for probes
// and tests: one request at a time, data received meanwhile is queued for
// Receive. It is not safe for concurrent use.
type Client struct {
	pc        net.PacketConn
	server    netip.AddrPort
	cred      Credentials
	realm     string
	nonce     string
	integrity stun.MessageIntegrity
	timeout   time.Duration
	queue     []Data
	channels  map[uint16]netip.AddrPort
	buf       []byte
}

// NewClient returns a client talking to server from pc. timeout bounds each
// request (0: DefaultTimeout). The caller keeps pc and closes it.
func NewClient(pc net.PacketConn, server netip.AddrPort, cred Credentials, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{
		pc: pc, server: server, cred: cred, timeout: timeout,
		channels: map[uint16]netip.AddrPort{},
		buf:      make([]byte, bufSize),
	}
}

// Realm returns the realm in use (after Challenge).
func (c *Client) Realm() string { return c.realm }

// Challenge sends an Allocate request without credentials and keeps the
// REALM and NONCE of the 401 answer. It returns the server's realm.
func (c *Client) Challenge() (string, error) {
	req, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		requestedTransportUDP(), stun.Fingerprint)
	if err != nil {
		return "", fmt.Errorf("build Allocate: %w", err)
	}
	res, err := c.transact(req)
	if err != nil {
		return "", err
	}
	if res.Type.Class == stun.ClassSuccessResponse {
		return "", errors.New("the server allocated without asking for credentials")
	}
	if err := c.takeNonce(res); err != nil {
		return "", err
	}
	return c.realm, nil
}

// takeNonce keeps the REALM and NONCE of a 401 or 438 answer.
func (c *Client) takeNonce(res *stun.Message) error {
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(res); err != nil || (code.Code != stun.CodeUnauthorized && code.Code != stun.CodeStaleNonce) {
		return errorOf(res)
	}
	var realm stun.Realm
	var nonce stun.Nonce
	if err := realm.GetFrom(res); err != nil {
		return fmt.Errorf("%d answer without REALM", code.Code)
	}
	if err := nonce.GetFrom(res); err != nil {
		return fmt.Errorf("%d answer without NONCE", code.Code)
	}
	c.realm = realm.String()
	if c.cred.Realm != "" {
		c.realm = c.cred.Realm
	}
	c.nonce = nonce.String()
	c.integrity = stun.NewLongTermIntegrity(c.cred.Username, c.realm, c.cred.Password)
	return nil
}

// Allocate requests a UDP allocation (challenging first if needed).
func (c *Client) Allocate() (Allocation, error) {
	if c.nonce == "" {
		if _, err := c.Challenge(); err != nil {
			return Allocation{}, err
		}
	}
	res, err := c.authenticated(stun.MethodAllocate, requestedTransportUDP())
	if err != nil {
		return Allocation{}, err
	}
	var relayed, mapped stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return Allocation{}, fmt.Errorf("allocate response without XOR-RELAYED-ADDRESS: %w", err)
	}
	a := Allocation{Relayed: apOf(relayed.IP, relayed.Port)}
	if mapped.GetFrom(res) == nil {
		a.Mapped = apOf(mapped.IP, mapped.Port)
	}
	if v, err := res.Get(stun.AttrLifetime); err == nil && len(v) == 4 {
		a.Lifetime = time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	}
	return a, nil
}

// CreatePermission installs a permission for ip.
func (c *Client) CreatePermission(ip netip.Addr) error {
	_, err := c.authenticated(stun.MethodCreatePermission, xorPeer(netip.AddrPortFrom(ip, 0)))
	return err
}

// ChannelBind binds channel ch (0x4000-0x4FFF) to peer.
func (c *Client) ChannelBind(ch uint16, peer netip.AddrPort) error {
	_, err := c.authenticated(stun.MethodChannelBind,
		stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(ch >> 8), byte(ch), 0, 0}},
		xorPeer(peer))
	if err == nil {
		c.channels[ch] = peer
	}
	return err
}

// Release deletes the allocation (Refresh with LIFETIME 0).
func (c *Client) Release() error {
	_, err := c.authenticated(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}})
	return err
}

// Send sends data to peer in a Send indication.
func (c *Client) Send(peer netip.AddrPort, data []byte) error {
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeer(peer), stun.RawAttribute{Type: stun.AttrData, Value: data}, stun.Fingerprint)
	if err != nil {
		return fmt.Errorf("build Send indication: %w", err)
	}
	if _, err := c.pc.WriteTo(m.Raw, net.UDPAddrFromAddrPort(c.server)); err != nil {
		return fmt.Errorf("send indication to %s: %w", c.server, err)
	}
	return nil
}

// SendChannel sends data on a bound channel.
func (c *Client) SendChannel(ch uint16, data []byte) error {
	b := make([]byte, 4, 4+len(data)+3)
	binary.BigEndian.PutUint16(b[0:2], ch)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(data)))
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	if _, err := c.pc.WriteTo(b, net.UDPAddrFromAddrPort(c.server)); err != nil {
		return fmt.Errorf("send ChannelData to %s: %w", c.server, err)
	}
	return nil
}

// Receive returns the next data relayed to the client, waiting until
// deadline; ErrTimeout if none came.
func (c *Client) Receive(deadline time.Time) (Data, error) {
	for {
		if len(c.queue) > 0 {
			d := c.queue[0]
			c.queue = c.queue[1:]
			return d, nil
		}
		_ = c.pc.SetReadDeadline(deadline)
		n, from, err := c.pc.ReadFrom(c.buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return Data{}, ErrTimeout
		}
		if err != nil {
			return Data{}, fmt.Errorf("read from %s: %w", c.pc.LocalAddr(), err)
		}
		if addrOf(from) != c.server {
			continue
		}
		if d, ok := parseDatagram(c.buf[:n], c.channels); ok && d.data != nil {
			return *d.data, nil
		}
	}
}

// authenticated sends an authenticated request, retrying once on a stale
// nonce, and returns the success response.
func (c *Client) authenticated(method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for attempt := 0; ; attempt++ {
		setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		setters = append(setters, attrs...)
		setters = append(setters, stun.NewUsername(c.cred.Username), stun.NewRealm(c.realm),
			stun.NewNonce(c.nonce), c.integrity, stun.Fingerprint)
		req, err := stun.Build(setters...)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", method, err)
		}
		res, err := c.transact(req)
		if err != nil {
			return nil, err
		}
		rerr := errorOf(res)
		if rerr == nil {
			return res, nil
		}
		var er *ErrorResponse
		if attempt == 0 && errors.As(rerr, &er) && er.Code == int(stun.CodeStaleNonce) {
			if err := c.takeNonce(res); err != nil {
				return nil, err
			}
			continue
		}
		return nil, rerr
	}
}

// transact runs one request, queueing relayed data that arrives meanwhile.
func (c *Client) transact(req *stun.Message) (*stun.Message, error) {
	res, _, _, err := transaction(c.pc, req, c.server, c.timeout, func(d datagram) {
		if d.data != nil && len(c.queue) < 64 {
			if d.data.Channel != 0 {
				d.data.From = c.channels[d.data.Channel]
			}
			c.queue = append(c.queue, *d.data)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s to %s: %w", req.Type.Method, c.server, err)
	}
	return res, nil
}

// requestedTransportUDP is REQUESTED-TRANSPORT UDP (protocol 17).
func requestedTransportUDP() stun.Setter {
	return stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
}

func xorPeer(peer netip.AddrPort) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		a := stun.XORMappedAddress{IP: peer.Addr().AsSlice(), Port: int(peer.Port())}
		return a.AddToAs(m, stun.AttrXORPeerAddress)
	})
}

type setterFunc func(m *stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }
