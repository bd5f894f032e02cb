package testutil

import (
	"errors"
	"net"
	"testing"

	"github.com/pion/logging"
	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"
)

// TURNCode returns the STUN error code carried by an error from pion's TURN
// client (a *stun.TurnError), or 0 when err is nil or carries none.
func TURNCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	return 0
}

// PionServer starts a bare pion TURN server (no ferry code) on loopback UDP
// and TCP listeners with relays on 127.0.0.1 and pion's default, open
// permissions, authenticating with auth in realm. It returns the UDP and
// TCP listener addresses; t.Cleanup closes it.
func PionServer(t testing.TB, realm string, auth turn.AuthHandler) (udp, tcp string) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		_ = pc.Close()
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	gen := func() turn.RelayAddressGenerator {
		return &turn.RelayAddressGeneratorStatic{RelayAddress: net.ParseIP("127.0.0.1"), Address: "127.0.0.1"}
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:             realm,
		AuthHandler:       auth,
		LoggerFactory:     lf,
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: gen()}},
		ListenerConfigs:   []turn.ListenerConfig{{Listener: ln, RelayAddressGenerator: gen()}},
	})
	if err != nil {
		_ = pc.Close()
		_ = ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing pion server: %v", err)
		}
	})
	return pc.LocalAddr().String(), ln.Addr().String()
}

// StaticAuth is a pion AuthHandler for one long-term user.
func StaticAuth(user, realm, pass string) turn.AuthHandler {
	key := turn.GenerateAuthKey(user, realm, pass)
	return func(ra *turn.RequestAttributes) (string, []byte, bool) {
		if ra.Username != user {
			return "", nil, false
		}
		return user, key, true
	}
}
