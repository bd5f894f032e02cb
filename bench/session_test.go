package bench

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// mismatchServer is a UDP TURN stand-in: it challenges unauthenticated
// requests (401), answers an authenticated Allocate with 437 from the first
// refuse client addresses it sees and with a relayed address from the
// others. It returns its address.
func mismatchServer(t *testing.T, refuse int) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, stunBufLen)
		refused := map[string]bool{}
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil {
				continue
			}
			id := stun.NewTransactionIDSetter(m.TransactionID)
			var res *stun.Message
			switch {
			case !m.Contains(stun.AttrMessageIntegrity):
				res, err = stun.Build(id, stun.NewType(m.Type.Method, stun.ClassErrorResponse),
					stun.CodeUnauthorized, stun.NewRealm(testRealm), stun.NewNonce("nonce"))
			case refused[from.String()] || len(refused) < refuse:
				refused[from.String()] = true
				res, err = stun.Build(id, stun.NewType(m.Type.Method, stun.ClassErrorResponse),
					stun.ErrorCodeAttribute{Code: codeAllocMismatch, Reason: []byte("Mismatched allocation\x00")})
			default:
				relayed := stun.XORMappedAddress{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
				res, err = stun.Build(id, stun.NewType(m.Type.Method, stun.ClassSuccessResponse),
					setter(func(m *stun.Message) error { return relayed.AddToAs(m, stun.AttrXORRelayedAddress) }))
			}
			if err == nil {
				_, _ = pc.WriteTo(res.Raw, from)
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestDialAllocateRetriesMismatch(t *testing.T) {
	creds := Credentials{User: testUser, Password: testPass}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Two 437s, then a fresh socket gets its relay.
	s, relayed, err := dialAllocate(ctx, "udp", mismatchServer(t, 2), netip.Addr{}, creds, testRealm)
	if err != nil {
		t.Fatalf("after two 437s: %v", err)
	}
	_ = s.close()
	if relayed.Port() != 40000 {
		t.Fatalf("relayed %s, want port 40000", relayed)
	}

	// Three: it gives up with the 437, its reason without the NUL.
	_, _, err = dialAllocate(ctx, "udp", mismatchServer(t, 3), netip.Addr{}, creds, testRealm)
	var re *ResponseError
	if !errors.As(err, &re) || re.Code != codeAllocMismatch || re.Reason != "Mismatched allocation" {
		t.Fatalf("after three 437s: %v, want a 437 ResponseError with a clean reason", err)
	}
}
