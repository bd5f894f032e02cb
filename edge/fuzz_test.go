package edge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// seedMessages are well-formed and near-miss inputs for every fuzz target.
func seedMessages(f *testing.F) [][]byte {
	binding := msgBindingRequest(f)
	badCookie := bytes.Clone(binding)
	badCookie[4] = 0
	return [][]byte{
		binding,
		msgBindingSuccess(f),
		msgAllocateWithIntegrity(f),
		msgSendIndication(f),
		msgChannelBindDenied(f),
		build(f, typeOf(stun.MethodChannelBind, stun.ClassErrorResponse),
			&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized}, stun.NewNonce("n"), stun.NewRealm("r"), stun.Fingerprint),
		build(f, typeOf(stun.MethodCreatePermission, stun.ClassErrorResponse),
			&stun.ErrorCodeAttribute{Code: stun.CodeForbidden}, stun.NewShortTermIntegrity("k")),
		channelData(0x4000, []byte("hello"), false),
		channelData(0x7FFF, []byte("hello"), true),
		channelData(0x4000, nil, false),
		binding[:len(binding)-4],
		badCookie,
		{0xFF, 0x00, 0x00, 0x00},
		{},
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range seedMessages(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := classifyDatagram(data)
		switch in.kind {
		case kindInvalid:
		case kindChannelData:
			num := be16(data[0:2])
			l := be16(data[2:4])
			if num < 0x4000 || num > 0x7FFF || l != in.dataLen ||
				len(data) < chanHeaderSize+l || len(data) > chanHeaderSize+pad4(l) {
				t.Fatalf("accepted bad ChannelData %x as %+v", data, in)
			}
		default:
			m := &stun.Message{Raw: bytes.Clone(data)}
			if err := m.Decode(); err != nil {
				t.Fatalf("accepted STUN that pion/stun rejects: %v", err)
			}
			if int(m.Length)+stunHeaderSize != len(data) {
				t.Fatal("length mismatch accepted")
			}
			wantIntegrity := m.Type.Class == stun.ClassRequest && m.Contains(stun.AttrMessageIntegrity)
			if in.integrity != wantIntegrity {
				t.Fatalf("integrity = %v, want %v", in.integrity, wantIntegrity)
			}
		}

		// Through the wrapper: passed exactly when classified valid and
		// under the MTU, and passed unchanged.
		counters := &Counters{}
		pc := WrapPacketConn(&fakePacketConn{pkts: [][]byte{data}}, Options{Counters: counters})
		buf := make([]byte, 2*DefaultMTU)
		n, _, err := pc.ReadFrom(buf)
		pass := in.kind != kindInvalid && len(data) < DefaultMTU
		if pass != (err == nil) {
			t.Fatalf("passed = %v, want %v", err == nil, pass)
		}
		if pass && !bytes.Equal(buf[:n], data) {
			t.Fatal("datagram modified")
		}
		s := counters.Snapshot()
		if got := s.Malformed + s.Oversized + s.BindingRequests + s.OtherRequests + s.Indications +
			s.Responses + s.ChannelDataPackets; got != 1 {
			t.Fatalf("datagram counted %d times: %+v", got, s)
		}
	})
}

func FuzzFrameStream(f *testing.F) {
	seeds := seedMessages(f)
	for i, s := range seeds {
		f.Add(s, uint8(i), false)
		f.Add(s, uint8(i), true)
	}
	f.Add(bytes.Join(seeds[:10], nil), uint8(7), false)
	f.Add(append(channelData(0x4000, []byte("abc"), true), msgBindingRequest(f)...), uint8(1), false)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, datagram bool) {
		reads := chunked(data, int(chunk)%64+1)
		if datagram {
			reads = chunked(data, int(chunk)*8+1) // up to 2041 bytes: oversized datagrams too
		}
		c := wrapConn(&chunkConn{reads: reads}, Options{Counters: &Counters{}, IdleTimeout: -1}, datagram)
		frames, err := readFrames(c, DefaultMTU)
		if err == nil {
			t.Fatal("readFrames ended without error")
		}
		if !datagram && !errors.Is(err, io.EOF) && !errors.Is(err, ErrInvalidFrame) && !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("unexpected error %v", err)
		}
		pos := 0
		for _, fr := range frames {
			if len(fr) >= DefaultMTU || len(fr) < chanHeaderSize {
				t.Fatalf("frame of %d bytes", len(fr))
			}
			// Every frame is one whole, valid frame in stream framing.
			if size, err := streamFrameSize(fr, DefaultMTU); err != nil || size != len(fr) {
				t.Fatalf("frame %x is not one stream frame: %d, %v", fr, size, err)
			}
			if !isChannelNumber(fr[0]) {
				if classifySTUN(fr).kind == kindInvalid {
					t.Fatalf("invalid STUN frame %x passed", fr)
				}
			}
			if datagram {
				// Padding may be added to ChannelData, never more.
				body := fr
				if isChannelNumber(fr[0]) {
					body = fr[:chanHeaderSize+be16(fr[2:4])]
				}
				i := bytes.Index(data[pos:], body)
				if i < 0 {
					t.Fatalf("frame %x not in the input after offset %d", fr, pos)
				}
				pos += i + len(body)
				continue
			}
			if len(fr) > len(data) {
				t.Fatal("frame longer than the input")
			}
			i := bytes.Index(data[pos:], fr)
			if i < 0 {
				t.Fatalf("frame %x not in the input after offset %d", fr, pos)
			}
			pos += i + len(fr)
		}
	})
}

func FuzzRewriteResponse(f *testing.F) {
	for _, s := range seedMessages(f) {
		f.Add(s, "", uint16(0), false, false)
		f.Add(s, "ferry/1.0", uint16(0), true, false)
		f.Add(s, "ferry/1.0", uint16(20), true, true)
		f.Add(s, "", uint16(len(s)), false, true)
	}
	guard, err := NewGuard(GuardOptions{BindNonces: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, software string, limit uint16, bind, stale bool) {
		var sw []byte
		if software != "" {
			sw = encodeSoftware(truncateUTF8(software, maxSoftware))
		}
		o := outCtx{software: sw, limit: int(limit), dst: netip.MustParseAddr("192.0.2.1"), stale: &staleRing{}}
		if bind {
			o.guard = guard
		}
		if stale && len(data) >= stunHeaderSize {
			o.stale.add(data[8:stunHeaderSize])
		}
		orig := bytes.Clone(data)
		p, act := planRewrite(data, o)
		if !bytes.Equal(data, orig) {
			t.Fatal("input modified by planning")
		}
		if act == sendAsIs {
			return
		}
		in := &stun.Message{Raw: orig}
		if err := in.Decode(); err != nil {
			t.Fatalf("rewrote or dropped a message pion/stun rejects: %v", err)
		}
		if in.Contains(stun.AttrMessageIntegrity) || in.Contains(stun.AttrMessageIntegritySHA256) {
			t.Fatal("rewrote or dropped an integrity-protected message")
		}
		if act == dropResponse {
			if limit == 0 || len(data) <= int(limit) {
				t.Fatalf("dropped a %d-byte response under limit %d", len(data), limit)
			}
			return
		}
		out := appendRewritten(nil, data, p, o)
		if !bytes.Equal(data, orig) {
			t.Fatal("input modified")
		}
		if len(out) != p.size(data, sw) {
			t.Fatalf("planned %d bytes, wrote %d", p.size(data, sw), len(out))
		}
		m, err := checkWellFormed(out)
		if err != nil {
			t.Fatalf("rewritten message: %v\nin  %x\nout %x", err, orig, out)
		}
		if m.Type != in.Type || m.TransactionID != in.TransactionID {
			t.Fatal("type or transaction ID changed")
		}
		if in.Contains(stun.AttrFingerprint) != m.Contains(stun.AttrFingerprint) {
			t.Fatal("FINGERPRINT added or lost")
		}
		if p.fix403 && p.bareCode == 0 && errorCode(t, m) != 403 {
			t.Fatalf("fix403 planned, code %d", errorCode(t, m))
		}
		if p.bareCode != 0 && errorCode(t, m) != p.bareCode {
			t.Fatalf("code %d planned, got %d", p.bareCode, errorCode(t, m))
		}
		if p.addSoftware && !m.Contains(stun.AttrSoftware) {
			t.Fatal("SOFTWARE planned, not present")
		}
		// Binding responses may be up to bindingAllowance times the request
		// (RFC 8489 answers need XOR-MAPPED-ADDRESS); other errors may
		// exceed it only as the minimal 401/438 challenge.
		bindingOK := m.Type.Method == stun.MethodBinding && len(out) <= bindingAllowance*int(limit)
		if limit > 0 && !bindingOK && len(out) > len(orig) && len(out) > int(limit) && m.Type.Class == stun.ClassErrorResponse {
			if c := errorCode(t, m); c != 401 && c != 438 {
				t.Fatalf("error %d of %d bytes sent for a %d-byte request", c, len(out), limit)
			}
		}
		// Nonces are bound in error responses (pion's 401/438 challenges,
		// the only responses that carry one); a NONCE in any other
		// response is passed as it is.
		if bind && m.Type.Class == stun.ClassErrorResponse {
			var n stun.Nonce
			if n.GetFrom(m) == nil && !guard.caseMatches(n, o.dst) {
				t.Fatal("NONCE not bound to the client")
			}
		}
		// Rewriting again changes nothing more.
		o.stale = nil
		if p2, act2 := planRewrite(out, o); act2 == sendRewritten {
			if again := appendRewritten(nil, out, p2, o); !bytes.Equal(again, out) && !p2.addSoftware {
				t.Fatalf("rewrite is not idempotent:\n%x\n%x", out, again)
			}
		}
	})
}

// FuzzNonce: any NONCE value a client sends decodes or is refused without
// panicking, and binding then checking round-trips per address.
func FuzzNonce(f *testing.F) {
	for _, s := range []string{"1ABCDEFGHIJKLMNOPQRSTUVWX", "1abcdefghijklmnopqrstuvwx", "", "0", "ZZZZZZZZZZZZZZZZZZZZZZZZZ",
		"obMatJos2AAABAAAAAABAAAA", "not-base36!", "\x00\xff"} {
		f.Add([]byte(s), uint32(0xC0000201))
	}
	g, err := NewGuard(GuardOptions{BindNonces: true, NonceLifetime: 10 * time.Minute})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, nonce []byte, ipv4 uint32) {
		_, _ = pionNonceMinute(nonce)
		ip := netip.AddrFrom4([4]byte{byte(ipv4 >> 24), byte(ipv4 >> 16), byte(ipv4 >> 8), byte(ipv4)})
		bound := bytes.Clone(nonce)
		g.bindNonce(bound, ip)
		if !bytes.EqualFold(bound, nonce) || len(bound) != len(nonce) {
			t.Fatalf("binding changed more than letter case: %q -> %q", nonce, bound)
		}
		if g.checkNonce(bound, ip) == nonceForeign {
			t.Fatalf("bound nonce %q refused at its own address", bound)
		}
	})
}

// FuzzAdmit runs arbitrary datagrams through the edge's request path with
// every check on: it must not panic, never grows the request, and what it
// passes on after stripping a stale nonce's integrity is still well-formed
// STUN.
func FuzzAdmit(f *testing.F) {
	for _, s := range seedMessages(f) {
		f.Add(s)
	}
	f.Add(msgAllocateWithIntegrity(f))
	g, err := NewGuard(GuardOptions{AllocateRate: 60, AllocateBurst: 1 << 20, AuthFailureRate: 60, AuthFailureBurst: 1 << 20,
		NonceLifetime: 10 * time.Minute, BindNonces: true})
	if err != nil {
		f.Fatal(err)
	}
	cfg := newConfig(Options{Guard: g,
		Screen: func(raw []byte, _ net.Addr) []byte {
			if len(raw) > 0 && raw[len(raw)-1]&1 == 1 {
				return []byte("refused")
			}
			return nil
		},
		Gate: func([]byte, net.Addr, net.Addr) []byte { return nil }})
	src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := classifyDatagram(data)
		if in.kind != kindRequest && in.kind != kindBindingRequest {
			return
		}
		var sh shard
		var stale staleRing
		b := bytes.Clone(data)
		n, _, v := cfg.admit(b, in, src, src, &sh, &stale)
		if n > len(b) || n < stunHeaderSize {
			t.Fatalf("admit returned length %d of %d", n, len(b))
		}
		if v == admitPass && n < len(b) {
			if classifyDatagram(b[:n]).kind == kindInvalid {
				t.Fatalf("stripped request is not well-formed: %x", b[:n])
			}
			if !stale.take(b[8:stunHeaderSize]) {
				t.Fatal("stripped request not remembered as stale")
			}
		}
	})
}
