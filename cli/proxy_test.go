package cli

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/proxyproto"
)

var proxyListenRE = regexp.MustCompile(`listen="?tcp://(127\.0\.0\.1:\d+)\?proxy-protocol=v2`)

// TestServeProxyProtocol: `ferry serve` with a tcp:// listener that reads
// PROXY protocol headers from 127.0.0.1 only: a Binding request behind a
// header from there is answered with the header's client; a connection
// from 127.0.0.2 is closed and counted in /metrics.
func TestServeProxyProtocol(t *testing.T) {
	cfg := "realm: " + drainRealm + "\nlisten: [udp://127.0.0.1:0, \"tcp://127.0.0.1:0?proxy-protocol=v2\"]\n" +
		"proxy-protocol:\n  trusted: [127.0.0.1/32]\n" +
		"relay:\n  ip: [127.0.0.1]\n" +
		"auth:\n  users: [" + drainUser + "=" + drainPass + "]\n" +
		"http:\n  listen: 127.0.0.1:0\n  admin-token: " + adminToken + "\n"
	sf := startServingYAML(t, cfg)
	m := proxyListenRE.FindStringSubmatch(sf.te.stderr.String())
	if m == nil {
		t.Fatalf("no proxy-protocol listener in the log:\n%s", sf.te.stderr)
	}
	to := m[1]
	client := netip.MustParseAddrPort("203.0.113.7:4444")

	c, err := net.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst := netip.MustParseAddrPort(to)
	if _, err := c.Write(proxyproto.Header{Command: proxyproto.Proxy, Source: client, Destination: dst}.Append(nil)); err != nil {
		t.Fatal(err)
	}
	sc := turn.NewSTUNConn(c)
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := sc.WriteTo(req.Raw, nil); err != nil {
		t.Fatal(err)
	}
	_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := sc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no Binding answer through the proxy: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	var xor stun.XORMappedAddress
	if err := res.Decode(); err != nil || xor.GetFrom(res) != nil {
		t.Fatalf("Binding answer %v without XOR-MAPPED-ADDRESS", res)
	}
	if xor.String() != client.String() {
		t.Fatalf("XOR-MAPPED-ADDRESS %s, want %s", xor, client)
	}

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	u, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_, _ = u.Write(proxyproto.Header{Command: proxyproto.Proxy, Source: client, Destination: dst}.Append(req.Raw))
	_ = u.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Closed (a reset, since what it sent was never read), unanswered.
	if b, err := io.ReadAll(u); errors.Is(err, os.ErrDeadlineExceeded) || len(b) > 0 {
		t.Fatalf("untrusted peer: read %d bytes, %v; want the connection closed unanswered", len(b), err)
	}
	series := regexp.MustCompile(`(?m)^ferry_proxy_protocol_rejected_total\{reason="untrusted"\} (\S+)$`)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, body := sf.get(t, "/metrics")
		if m := series.FindStringSubmatch(body); m != nil {
			if v, _ := strconv.ParseFloat(m[1], 64); v == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry_proxy_protocol_rejected_total{reason=\"untrusted\"} is not 1:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
