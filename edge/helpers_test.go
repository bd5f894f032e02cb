package edge

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// setterFunc adapts a function to stun.Setter.
type setterFunc func(m *stun.Message) error

func (f setterFunc) AddTo(m *stun.Message) error { return f(m) }

func xorPeer(ip net.IP, port int) stun.Setter {
	return setterFunc(func(m *stun.Message) error {
		return (&stun.XORMappedAddress{IP: ip, Port: port}).AddToAs(m, stun.AttrXORPeerAddress)
	})
}

func channelNumber(n uint16) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(n >> 8), byte(n), 0, 0}}
}

func requestedTransportUDP() stun.Setter {
	return stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
}

func typeOf(method stun.Method, class stun.MessageClass) stun.MessageType {
	return stun.NewType(method, class)
}

func build(t testing.TB, setters ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		t.Fatalf("build STUN message: %v", err)
	}
	return m.Raw
}

func decode(t testing.TB, raw []byte) *stun.Message {
	t.Helper()
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil {
		t.Fatalf("decode STUN message %x: %v", raw, err)
	}
	return m
}

// channelData returns a ChannelData message; padded adds stream padding.
func channelData(num uint16, payload []byte, padded bool) []byte {
	b := binary.BigEndian.AppendUint16(nil, num)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, payload...)
	for padded && len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// Messages used across tests.
func msgBindingRequest(t testing.TB) []byte {
	return build(t, stun.BindingRequest, stun.Fingerprint)
}

func msgBindingSuccess(t testing.TB) []byte {
	return build(t, stun.BindingSuccess,
		&stun.XORMappedAddress{IP: net.IPv4(127, 0, 0, 1), Port: 4242}, stun.Fingerprint)
}

func msgAllocateWithIntegrity(t testing.TB) []byte {
	return build(t, typeOf(stun.MethodAllocate, stun.ClassRequest), requestedTransportUDP(), stun.NewUsername("u"),
		stun.NewRealm("r"), stun.NewNonce("n"), stun.NewLongTermIntegrity("u", "r", "p"), stun.Fingerprint)
}

func msgSendIndication(t testing.TB) []byte {
	return build(t, stun.NewType(stun.MethodSend, stun.ClassIndication),
		xorPeer(net.IPv4(127, 0, 0, 1), 9), stun.RawAttribute{Type: stun.AttrData, Value: []byte("hello")},
		stun.Fingerprint)
}

// msgChannelBindDenied is what pion 5.0.13 answers a ChannelBind to a peer
// its PermissionHandler refuses.
func msgChannelBindDenied(t testing.TB) []byte {
	return build(t, typeOf(stun.MethodChannelBind, stun.ClassErrorResponse), &stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized})
}

// fakePacketConn returns pkts in order from ReadFrom (then io.EOF, or
// pkts[len-1] forever when repeat is set) and records writes.
type fakePacketConn struct {
	pkts   [][]byte
	i      int
	repeat bool
	addr   net.Addr
	record bool
	writes [][]byte
}

func (f *fakePacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if f.i >= len(f.pkts) {
		if !f.repeat || len(f.pkts) == 0 {
			return 0, nil, io.EOF
		}
		f.i = len(f.pkts) - 1
	}
	n := copy(p, f.pkts[f.i])
	f.i++
	return n, f.addr, nil
}

func (f *fakePacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	if f.record {
		f.writes = append(f.writes, append([]byte(nil), b...))
	}
	return len(b), nil
}

func (f *fakePacketConn) Close() error                     { return nil }
func (f *fakePacketConn) LocalAddr() net.Addr              { return f.addr }
func (f *fakePacketConn) SetDeadline(time.Time) error      { return nil }
func (f *fakePacketConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakePacketConn) SetWriteDeadline(time.Time) error { return nil }

// chunkConn is an in-memory net.Conn. Read returns the next of reads (one
// datagram, or one TCP segment), then io.EOF; writes are recorded.
type chunkConn struct {
	reads  [][]byte
	mu     sync.Mutex
	writes [][]byte
	closed bool
}

// chunked splits stream into reads of at most n bytes.
func chunked(stream []byte, n int) [][]byte {
	var out [][]byte
	for len(stream) > 0 {
		k := min(n, len(stream))
		out = append(out, stream[:k])
		stream = stream[k:]
	}
	return out
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.reads) == 0 {
		return 0, io.EOF
	}
	if len(p) < len(c.reads[0]) {
		// Like a DTLS conn; stream tests chunk below the buffer size.
		return 0, io.ErrShortBuffer
	}
	n := copy(p, c.reads[0])
	c.reads = c.reads[1:]
	return n, nil
}

func (c *chunkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, append([]byte(nil), b...))
	return len(b), nil
}

func (c *chunkConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *chunkConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478} }
func (c *chunkConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

// readFrames reads frames from c until an error, with a buffer of size n.
func readFrames(c net.Conn, n int) ([][]byte, error) {
	buf := make([]byte, n)
	var frames [][]byte
	for {
		k, err := c.Read(buf)
		if err != nil {
			return frames, err
		}
		frames = append(frames, append([]byte(nil), buf[:k]...))
	}
}

// errorCode returns m's ERROR-CODE, or 0.
func errorCode(t testing.TB, m *stun.Message) int {
	t.Helper()
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return 0
	}
	return int(ec.Code)
}
