package engine

import (
	"github.com/pion/stun/v3"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

// binding answers a Binding request (RFC 8489 §6.3; RFC 5780 §6 on UDP
// listeners that have an alternate address set). Over UDP the answer
// carries only what the request needs: XOR-MAPPED-ADDRESS, plus
// RESPONSE-ORIGIN and OTHER-ADDRESS where RFC 5780 is on, plus FINGERPRINT
// when the request had one; it is held to the amplification cap.
func (e *Engine) binding(out *Output, c *Client, m *stunwire.Message, reqLen int) {
	e.stats.Bindings.inc()
	ref, nat := e.nat[c.Local]
	nat = nat && c.Transport == UDP
	change, hasChange := m.Uint32(stun.AttrChangeRequest)
	if m.NUnknown > 0 || (m.Has(stun.AttrChangeRequest) && !nat) {
		b := e.begin(out, m, stun.ClassErrorResponse)
		b.AddErrorCode(420, reason(c, false, 420))
		if m.NUnknown > 0 {
			b.AddUnknown(m.Unknown[:m.NUnknown])
		} else {
			b.AddUnknown([]uint16{uint16(stun.AttrChangeRequest)})
		}
		e.send(out, c, nil, m.HasFingerprint, reqLen)
		return
	}
	if m.Has(stun.AttrChangeRequest) && !hasChange {
		e.fail(out, c, m, reqLen, 400, nil)
		return
	}
	b := e.begin(out, m, stun.ClassSuccessResponse)
	b.AddXOR(stun.AttrXORMappedAddress, c.Remote)
	sock, from := c.Socket, c.Local
	if nat {
		set := &e.cfg.NAT[ref.set]
		role := ref.role
		if change&stunwire.ChangeIP != 0 {
			role ^= 1
		}
		if change&stunwire.ChangePort != 0 {
			role ^= 2
		}
		sock, from = set.Socket[role], set.Addr[role]
		b.AddAddress(stun.AttrResponseOrigin, from, false)
		b.AddAddress(stun.AttrOtherAddress, set.Addr[ref.role^3], false)
	}
	// SOFTWARE goes over connections, and on RFC 5780 listeners (whose
	// clients, NAT discovery tools, show it) when the answer stays within
	// the amplification cap.
	if sw := e.cfg.Software; sw != "" && (c.Transport != UDP || nat) {
		size := b.Len() + stunwire.AttrHeaderSize + stunwire.Pad4(min(len(sw), stunwire.MaxSoftware))
		if m.HasFingerprint {
			size += 8
		}
		if c.Transport != UDP || size <= max(maxAmplification*reqLen, minAmplificationCap) {
			b.AddSoftware(sw)
		}
	}
	e.sendFrom(out, c, sock, from, nil, m.HasFingerprint, reqLen)
}
