package cli

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

const (
	drainUser  = "alice"
	drainPass  = "wonderland"
	drainRealm = "ferry.test"
)

var udpListenRE = regexp.MustCompile(`listen=udp://(127\.0\.0\.1:\d+)`)

const adminToken = "admin-token-0123456789"

// servingFerry is `ferry serve` running in-process on loopback.
type servingFerry struct {
	te     *cliEnv
	exited chan struct{} // closed when serve returned, with code set
	code   int
	udp    string // TURN UDP listener
	http   string // base URL of the HTTP listener
}

func startServing(t *testing.T, drainTimeout time.Duration, extraYAML ...string) *servingFerry {
	t.Helper()
	return startServingYAML(t, servingYAML(drainTimeout, "", "")+strings.Join(extraYAML, ""))
}

// servingYAML is the configuration of startServing, with extra lines under
// auth: and http:.
func servingYAML(drainTimeout time.Duration, auth, http string) string {
	return "realm: " + drainRealm + "\nlisten: [udp://127.0.0.1:0, tcp://127.0.0.1:0]\n" +
		"relay:\n  ip: [127.0.0.1]\n  allow-loopback-peers: true\n" +
		"auth:\n  users: [" + drainUser + "=" + drainPass + "]\n" + auth +
		"http:\n  listen: 127.0.0.1:0\n  admin-token: " + adminToken + "\n" + http +
		"drain-timeout: " + drainTimeout.String() + "\n"
}

// startServingYAML runs `ferry serve` in-process on the configuration cfg.
func startServingYAML(t *testing.T, cfg string) *servingFerry {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sf := &servingFerry{te: newCLIEnv(), exited: make(chan struct{})}
	go func() {
		sf.code = sf.te.run("serve", "--config", path, "--udp-sockets", "1")
		close(sf.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-sf.exited:
		default:
			sf.te.sigs <- syscall.SIGINT
			select {
			case <-sf.exited:
			case <-time.After(10 * time.Second):
				t.Error("serve did not stop on SIGINT")
			}
		}
		if t.Failed() {
			t.Logf("ferry log:\n%s", sf.te.stderr)
		}
	})
	waitForText(t, sf.te.stderr, "ferry ready")
	log := sf.te.stderr.String()
	m, h := udpListenRE.FindStringSubmatch(log), httpAddrRE.FindStringSubmatch(log)
	if m == nil || h == nil {
		t.Fatalf("no UDP or HTTP address in the log:\n%s", log)
	}
	sf.udp, sf.http = m[1], "http://"+h[1]
	return sf
}

func (sf *servingFerry) get(t *testing.T, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", sf.http+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// turnClient connects a pion TURN client over UDP.
func (sf *servingFerry) turnClient(t *testing.T) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: sf.udp, TURNServerAddr: sf.udp, Conn: conn,
		Username: drainUser, Password: drainPass, Realm: drainRealm,
		RTO:           200 * time.Millisecond,
		LoggerFactory: &logging.DefaultLoggerFactory{Writer: io.Discard},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// relayEcho sends one datagram through the relay and waits for its echo.
func relayEcho(relayConn net.PacketConn, peer net.Addr, msg string) error {
	if _, err := relayConn.WriteTo([]byte(msg), peer); err != nil {
		return err
	}
	buf := make([]byte, 1600)
	_ = relayConn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		n, _, err := relayConn.ReadFrom(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) == msg {
			return nil
		}
	}
}

// TestServeDrainsOnSIGTERM: during a relay session SIGTERM arrives; /readyz
// fails at once, new allocations get 508, the session keeps relaying until
// the drain timeout, and ferry exits 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	const timeout = 2 * time.Second
	sf := startServing(t, timeout)
	if code, body := sf.get(t, "/readyz"); code != 200 {
		t.Fatalf("readyz before drain: %d %s", code, body)
	}
	relayConn, err := sf.turnClient(t).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	peer := testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr()
	if err := relayEcho(relayConn, peer, "before"); err != nil {
		t.Fatalf("relay before SIGTERM: %v", err)
	}

	start := time.Now()
	sf.te.sigs <- syscall.SIGTERM
	waitForText(t, sf.te.stderr, "draining: refusing new allocations")
	if code, body := sf.get(t, "/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("readyz while draining: %d %s", code, body)
	}
	if _, err := sf.turnClient(t).Allocate(); testutil.TURNCode(err) != 508 {
		t.Fatalf("allocate while draining: %v (code %d), want 508", err, testutil.TURNCode(err))
	}
	if code, body := sf.get(t, "/metrics"); code != 200 || !strings.Contains(body, "ferry_server_draining 1") ||
		!strings.Contains(body, `ferry_allocations_refused_total{reason="draining"} 1`) {
		t.Fatalf("metrics while draining: %d\n%s", code, body)
	}
	// The session keeps relaying until the drain timeout.
	relayed := 0
	for time.Since(start) < timeout-500*time.Millisecond {
		if err := relayEcho(relayConn, peer, "during"); err != nil {
			t.Fatalf("relay %v after SIGTERM: %v", time.Since(start), err)
		}
		relayed++
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-sf.exited:
		t.Fatalf("exited %d after %v, before the drain timeout", sf.code, time.Since(start))
	default:
	}
	select {
	case <-sf.exited:
		if sf.code != 0 {
			t.Fatalf("exit code %d", sf.code)
		}
	case <-time.After(timeout + 10*time.Second):
		t.Fatal("serve did not exit after the drain timeout")
	}
	took := time.Since(start)
	if took < timeout {
		t.Fatalf("exited after %v, before the %v drain timeout", took, timeout)
	}
	if !strings.Contains(sf.te.stderr.String(), "drain timeout reached") {
		t.Fatalf("no drain timeout in the log:\n%s", sf.te.stderr)
	}
	t.Logf("relayed %d round trips while draining; exited after %v", relayed, took)
}

// TestServeDrainEnds covers the other ways a drain ends.
func TestServeDrainEnds(t *testing.T) {
	tests := []struct {
		name string
		// after SIGTERM; the allocation is live unless release is set
		release bool
		second  os.Signal // sent after SIGTERM, nil: none
		log     string
	}{
		{"last allocation released", true, nil, "drained: no allocations left"},
		{"second SIGTERM", false, syscall.SIGTERM, "second signal"},
		{"SIGINT during drain", false, syscall.SIGINT, "second signal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const timeout = time.Minute
			sf := startServing(t, timeout)
			relayConn, err := sf.turnClient(t).Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer relayConn.Close()
			start := time.Now()
			sf.te.sigs <- syscall.SIGTERM
			waitForText(t, sf.te.stderr, "draining: refusing new allocations")
			if tt.release {
				_ = relayConn.Close() // Refresh with LIFETIME 0
			}
			if tt.second != nil {
				sf.te.sigs <- tt.second
			}
			select {
			case <-sf.exited:
				if sf.code != 0 {
					t.Fatalf("exit code %d", sf.code)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("serve did not exit")
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("took %v", took)
			}
			if !strings.Contains(sf.te.stderr.String(), tt.log) {
				t.Fatalf("log lacks %q:\n%s", tt.log, sf.te.stderr)
			}
		})
	}
}

// TestServeSIGINTIsImmediate: SIGINT does not drain.
func TestServeSIGINTIsImmediate(t *testing.T) {
	sf := startServing(t, time.Minute)
	relayConn, err := sf.turnClient(t).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()
	sf.te.sigs <- syscall.SIGINT
	select {
	case <-sf.exited:
		if sf.code != 0 {
			t.Fatalf("exit code %d", sf.code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not stop serve at once")
	}
	if strings.Contains(sf.te.stderr.String(), "draining:") {
		t.Fatal("SIGINT drained")
	}
}

// TestHealthcheckCommand runs `ferry healthcheck` against a serving ferry
// over HTTP and over STUN, and against nothing.
func TestHealthcheckCommand(t *testing.T) {
	sf := startServing(t, time.Second)
	httpAddr := strings.TrimPrefix(sf.http, "http://")
	dead, err := net.ListenPacket("udp4", "127.0.0.1:0") // bound, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"http", []string{"--http-listen", httpAddr}, 0, "GET http://" + httpAddr + "/healthz"},
		{"stun", []string{"--listen", "udp://" + sf.udp}, 0, "STUN Binding to " + sf.udp},
		{"stun wildcard", []string{"--listen", "udp://0.0.0.0:" + sf.udp[strings.LastIndex(sf.udp, ":")+1:]}, 0, "STUN Binding to " + sf.udp},
		{"stun silent", []string{"--listen", "udp://" + dead.LocalAddr().String()}, 1, "no answer"},
		{"http refused", []string{"--http-listen", dead.LocalAddr().String()}, 1, "unhealthy"},
		{"port 0", []string{"--listen", "udp://127.0.0.1:0"}, 1, "port 0"},
		{"bad config", []string{"--listen", "nope"}, 1, "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			te := newCLIEnv()
			code := te.run(append([]string{"healthcheck", "--timeout", "1s"}, tt.args...)...)
			out := te.stdout.String() + te.stderr.String()
			if code != tt.code || !strings.Contains(out, tt.out) {
				t.Fatalf("exit %d, output %q; want %d with %q", code, out, tt.code, tt.out)
			}
		})
	}
}
