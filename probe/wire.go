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

// Retransmission: the first retransmit after initialRTO, doubling up to
// maxRTO, until the caller's timeout (RFC 8489 §6.2.1 with a shorter start,
// since a probe wants answers quickly).
const (
	initialRTO = 200 * time.Millisecond
	maxRTO     = 1600 * time.Millisecond
	bufSize    = 1600
)

// ErrTimeout means no answer arrived before the timeout.
var ErrTimeout = errors.New("no answer before the timeout")

// ErrorResponse is a STUN error response.
type ErrorResponse struct {
	Method stun.Method
	Code   int
	Reason string
}

func (e *ErrorResponse) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("%s error %d", e.Method, e.Code)
	}
	return fmt.Sprintf("%s error %d %s", e.Method, e.Code, e.Reason)
}

// Data is application data received through an allocation.
type Data struct {
	// From is the peer that sent it.
	From netip.AddrPort
	// Channel is the channel number it came on, 0 for a Data indication.
	Channel uint16
	// Payload is the data.
	Payload []byte
}

// datagram is a classified incoming datagram.
type datagram struct {
	msg  *stun.Message // STUN, decoded
	data *Data         // Data indication or ChannelData
}

// parseDatagram classifies b, which came from the untrusted network: a STUN
// message (decoded, and a Data indication unpacked) or ChannelData. ok is
// false for anything else. chanPeers maps bound channels to their peers.
func parseDatagram(b []byte, chanPeers map[uint16]netip.AddrPort) (datagram, bool) {
	if len(b) >= 4 && b[0]>>6 == 1 { // ChannelData
		ch := binary.BigEndian.Uint16(b[0:2])
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if 4+n > len(b) {
			return datagram{}, false
		}
		return datagram{data: &Data{From: chanPeers[ch], Channel: ch, Payload: append([]byte(nil), b[4:4+n]...)}}, true
	}
	if !stun.IsMessage(b) {
		return datagram{}, false
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return datagram{}, false
	}
	if m.Type == stun.NewType(stun.MethodData, stun.ClassIndication) {
		var peer stun.XORMappedAddress
		if err := peer.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
			return datagram{}, false
		}
		payload, err := m.Get(stun.AttrData)
		if err != nil {
			return datagram{}, false
		}
		return datagram{data: &Data{From: apOf(peer.IP, peer.Port), Payload: payload}}, true
	}
	return datagram{msg: m}, true
}

// transaction sends req to dst over pc until a response with its
// transaction ID arrives or timeout passes; other datagrams go to other
// (which may be nil). It returns the response, where it came from and the
// time from the first send.
func transaction(pc net.PacketConn, req *stun.Message, dst netip.AddrPort, timeout time.Duration,
	other func(datagram),
) (*stun.Message, netip.AddrPort, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	rto := initialRTO
	buf := make([]byte, bufSize)
	to := net.UDPAddrFromAddrPort(dst)
	for {
		if _, err := pc.WriteTo(req.Raw, to); err != nil {
			return nil, netip.AddrPort{}, 0, fmt.Errorf("send %s to %s: %w", req.Type, dst, err)
		}
		next := time.Now().Add(rto)
		if next.After(deadline) {
			next = deadline
		}
		rto = min(2*rto, maxRTO)
		for {
			_ = pc.SetReadDeadline(next)
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return nil, netip.AddrPort{}, 0, fmt.Errorf("read from %s: %w", pc.LocalAddr(), err)
			}
			d, ok := parseDatagram(buf[:n], nil)
			if !ok {
				continue
			}
			if d.msg != nil && d.msg.TransactionID == req.TransactionID &&
				(d.msg.Type.Class == stun.ClassSuccessResponse || d.msg.Type.Class == stun.ClassErrorResponse) {
				return d.msg, addrOf(from), time.Since(start), nil
			}
			if other != nil {
				other(d)
			}
		}
		if !time.Now().Before(deadline) {
			return nil, netip.AddrPort{}, time.Since(start), ErrTimeout
		}
	}
}

// errorOf returns the ErrorResponse in m, or nil for a success response.
func errorOf(m *stun.Message) error {
	if m.Type.Class != stun.ClassErrorResponse {
		return nil
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(m); err != nil {
		return &ErrorResponse{Method: m.Type.Method, Code: 0, Reason: "error response without ERROR-CODE"}
	}
	return &ErrorResponse{Method: m.Type.Method, Code: int(ec.Code), Reason: string(ec.Reason)}
}

func apOf(ip net.IP, port int) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

func addrOf(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
