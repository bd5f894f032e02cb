package listen

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// TestOpenProxyProtocol: a tls:// listener with proxy-protocol is opened as
// plain TCP with the TLS configuration alongside (the PROXY header comes
// before the handshake); a tcp:// one is marked; the bound listeners keep
// the option.
func TestOpenProxyProtocol(t *testing.T) {
	cert := testutil.SelfSigned(t)
	certs, err := LoadCerts(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var ls []config.Listener
	for _, s := range []string{"tcp://127.0.0.1:0?proxy-protocol=v2", "tls://127.0.0.1:0?proxy-protocol=v2", "tls://127.0.0.1:0"} {
		l, err := config.ParseListener(s)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	set, bound, err := Open(context.Background(), ls, certs, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if len(set.Stream) != 3 || len(bound) != 3 {
		t.Fatalf("%d streams, %d bound", len(set.Stream), len(bound))
	}
	for i, want := range []struct {
		proxy, tlsConf, tcpListener bool
	}{{true, false, true}, {true, true, true}, {false, false, false}} {
		st := set.Stream[i]
		_, plain := st.Listener.(*net.TCPListener)
		if st.ProxyProtocol != want.proxy || (st.TLS != nil) != want.tlsConf || plain != want.tcpListener {
			t.Errorf("%s: ProxyProtocol %v, TLS config %v, plain TCP listener %v (%T)", ls[i], st.ProxyProtocol, st.TLS != nil, plain, st.Listener)
		}
		if bound[i].ProxyProtocol != want.proxy || bound[i].Addr.Port() == 0 {
			t.Errorf("bound %s", bound[i])
		}
	}
	if c := set.Stream[1].TLS; c.GetCertificate == nil || c.MinVersion < tls.VersionTLS12 {
		t.Errorf("TLS configuration %+v", c)
	}
}
