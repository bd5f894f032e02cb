package docker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// maxImageBytes is the size the image must stay under.
const maxImageBytes = 25_000_000

// requireDocker skips (fails with CI=true) unless docker and a running
// daemon are available.
func requireDocker(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := exec.LookPath("docker"); err != nil {
		why = "docker CLI not found"
	} else if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		why = "no running Docker daemon: " + strings.TrimSpace(string(out))
	}
	if why == "" {
		return
	}
	testutil.Unavailable(t, "%s; run scripts/install-test-deps.sh docker", why)
}

// docker runs the docker CLI and returns its trimmed stdout.
func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := docker(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestImage(t *testing.T) {
	requireDocker(t)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	suffix := randomSuffix(t)
	image := "ferry-test:" + suffix
	name := "ferry-test-" + suffix

	// Build.
	start := time.Now()
	build := exec.Command("bash", filepath.Join(root, "docker", "build.sh"), image)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker/build.sh: %v\n%s", err, out)
	} else {
		t.Logf("docker/build.sh in %v:\n%s", time.Since(start).Round(time.Millisecond), bytes.TrimSpace(out))
	}
	t.Cleanup(func() { _, _ = docker(t, "rmi", "-f", image) })

	size, err := strconv.ParseInt(mustDocker(t, "image", "inspect", "-f", "{{.Size}}", image), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ferry image %s: %d bytes (%.1f MB)\n", image, size, float64(size)/1e6)
	if size >= maxImageBytes {
		t.Errorf("image is %d bytes, want under %d", size, maxImageBytes)
	}
	if user := mustDocker(t, "image", "inspect", "-f", "{{.Config.User}}", image); user == "" || user == "0" || strings.HasPrefix(user, "root") || strings.HasPrefix(user, "0:") {
		t.Errorf("image runs as %q, want a non-root user", user)
	}

	// The image says which commit it is: build.sh stamps git describe.
	desc, err := exec.Command("git", "-C", root, "describe", "--tags", "--always").Output()
	if err != nil {
		t.Fatalf("git describe: %v", err)
	}
	if v := mustDocker(t, "run", "--rm", image, "version"); !strings.Contains(v, strings.TrimSpace(string(desc))) || strings.Contains(v, "devel") {
		t.Errorf("ferry version in the image says %q, want the commit %s", v, bytes.TrimSpace(desc))
	}

	// Run on free loopback ports with the host's network.
	turnPort, httpPort := testutil.FreePort(t), testutil.FreePort(t)
	lo16, hi16 := testutil.FreePortRange(t, netip.MustParseAddr("127.0.0.1"), 20)
	lo, hi := int(lo16), int(hi16)
	turnAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(turnPort))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	const user, pass, realm = "alice", "wonderland", "ferry.test"
	mustDocker(t, "run", "-d", "--name", name, "--network", "host",
		"--health-interval", "1s", "--health-start-period", "1s", "--health-timeout", "3s",
		"-e", "FERRY_REALM="+realm,
		"-e", "FERRY_LISTEN=udp://"+turnAddr+",tcp://"+turnAddr,
		"-e", "FERRY_RELAY_IP=127.0.0.1",
		"-e", fmt.Sprintf("FERRY_RELAY_PORTS=%d-%d", lo, hi),
		"-e", "FERRY_RELAY_ALLOW_LOOPBACK_PEERS=true",
		"-e", "FERRY_AUTH_USERS="+user+"="+pass,
		"-e", "FERRY_HTTP_LISTEN="+httpAddr,
		"-e", "FERRY_DRAIN_TIMEOUT=5s",
		image)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := docker(t, "logs", name)
			t.Logf("container log:\n%s", logs)
		}
		_, _ = docker(t, "rm", "-f", name)
	})

	// Healthy through HEALTHCHECK (ferry healthcheck -> /healthz).
	start = time.Now()
	for {
		status := mustDocker(t, "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", name)
		if status == "running healthy" {
			t.Logf("container healthy after %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if !strings.HasPrefix(status, "running") || time.Since(start) > 60*time.Second {
			t.Fatalf("container state %q after %v", status, time.Since(start))
		}
		time.Sleep(250 * time.Millisecond)
	}

	// STUN Binding through the container.
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server, _ := net.ResolveUDPAddr("udp4", turnAddr)
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if _, err := conn.WriteTo(req.Raw, server); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no Binding response: %v", err)
	}
	res := &stun.Message{Raw: buf[:n]}
	var xor stun.XORMappedAddress
	if err := res.Decode(); err != nil || res.TransactionID != req.TransactionID || xor.GetFrom(res) != nil {
		t.Fatalf("bad Binding response %v: %v", res, err)
	}
	if local := conn.LocalAddr().(*net.UDPAddr); !xor.IP.Equal(local.IP) || xor.Port != local.Port {
		t.Fatalf("XOR-MAPPED-ADDRESS %s:%d, client is %s", xor.IP, xor.Port, local)
	}

	// TURN relay round trip through the container.
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go func() {
		b := make([]byte, 1600)
		for {
			n, from, err := peer.ReadFrom(b)
			if err != nil {
				return
			}
			_, _ = peer.WriteTo(b[:n], from)
		}
	}()
	tconn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tconn.Close()
	client, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: turnAddr, TURNServerAddr: turnAddr, Conn: tconn,
		Username: user, Password: pass, Realm: realm,
		LoggerFactory: &logging.DefaultLoggerFactory{Writer: io.Discard},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate through the container: %v", err)
	}
	if p := relayConn.LocalAddr().(*net.UDPAddr).Port; p < lo || p > hi {
		t.Errorf("relay port %d outside %d-%d", p, lo, hi)
	}
	const rounds = 5
	for i := range rounds {
		msg := "through the container " + strconv.Itoa(i)
		if _, err := relayConn.WriteTo([]byte(msg), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		_ = relayConn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := relayConn.ReadFrom(buf)
		if err != nil || string(buf[:n]) != msg || from.String() != peer.LocalAddr().String() {
			t.Fatalf("relay round trip %d: %q from %v, %v", i, buf[:n], from, err)
		}
	}

	// /metrics counts what was relayed.
	body := get(t, "http://"+httpAddr+"/metrics")
	if !strings.Contains(body, fmt.Sprintf(`ferry_relay_packets_total{direction="to_peer"} %d`, rounds)) ||
		!strings.Contains(body, `ferry_allocations_active{family="ipv4",transport="udp"} 1`) {
		t.Errorf("metrics do not show the relayed packets:\n%s", grep(body, "ferry_relay_packets_total", "ferry_allocations_active"))
	}

	// docker stop: SIGTERM drains, the released allocation ends the drain,
	// and ferry exits 0.
	_ = relayConn.Close()
	if _, err := docker(t, "stop", "-t", "30", name); err != nil {
		t.Fatal(err)
	}
	if code := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", name); code != "0" {
		t.Fatalf("exit code %s after docker stop", code)
	}
	combined := mustCombinedLogs(t, name)
	if !strings.Contains(combined, "drained: no allocations left") || !strings.Contains(combined, "ferry stopped") {
		t.Errorf("docker stop did not drain and stop ferry:\n%s", combined)
	}
}

// mustCombinedLogs returns the container's stdout and stderr.
func mustCombinedLogs(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("docker", "logs", name).CombinedOutput()
	if err != nil {
		t.Fatalf("docker logs: %v\n%s", err, out)
	}
	return string(out)
}

func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return string(b)
}

func grep(s string, prefixes ...string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestImageFastPath: in a container of its own network namespace (Docker's
// bridge), the image as shipped relays in user space and says why, and
// with the capabilities the README gives (uid 0 holding only BPF,
// NET_ADMIN and NET_BIND_SERVICE) it attaches its kernel fast path to the
// container's interface. No traffic is sent: the fast path itself is
// tested in test/fastpath.
func TestImageFastPath(t *testing.T) {
	requireDocker(t)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	suffix := randomSuffix(t)
	image := "ferry-test:" + suffix
	build := exec.Command("bash", filepath.Join(root, "docker", "build.sh"), image)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker/build.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = docker(t, "rmi", "-f", image) })

	for _, c := range []struct {
		name  string
		flags []string
		want  *regexp.Regexp
	}{
		{"as shipped", nil,
			regexp.MustCompile(`msg="kernel fast path off; relaying in user space" reason="[^"]*CAP_BPF and CAP_NET_ADMIN`)},
		{"with the capabilities", fastPathFlags(t),
			regexp.MustCompile(`msg="kernel fast path on: [^"]*" mode=auto attached="eth0 \(tc\)"`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "ferry-test-" + randomSuffix(t)
			args := append([]string{"run", "-d", "--name", name}, c.flags...)
			args = append(args, "-e", "FERRY_AUTH_USERS=alice=wonderland", image)
			mustDocker(t, args...)
			t.Cleanup(func() { _, _ = docker(t, "rm", "-f", name) })
			deadline := time.Now().Add(30 * time.Second)
			for {
				logs := mustCombinedLogs(t, name)
				if strings.Contains(logs, "ferry ready") {
					if !c.want.MatchString(logs) {
						t.Fatalf("want a line matching %q; container log:\n%s", c.want, logs)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("ferry not ready after 30s; container log:\n%s", logs)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// fastPathFlags are the docker run flags the README gives for the kernel
// fast path: CAP_BPF where Docker knows it (23 and later), CAP_SYS_ADMIN
// on older Docker (Debian 12 ships 20.10), whose capability list and
// seccomp profile predate CAP_BPF.
func fastPathFlags(t *testing.T) []string {
	t.Helper()
	bpf := "BPF"
	v := mustDocker(t, "version", "--format", "{{.Server.Version}}")
	if major, _, _ := strings.Cut(v, "."); major != "" {
		if n, err := strconv.Atoi(major); err == nil && n < 23 {
			bpf = "SYS_ADMIN"
		}
	}
	t.Logf("Docker %s: --cap-add %s", v, bpf)
	return []string{"--user", "0", "--cap-drop", "ALL", "--cap-add", bpf, "--cap-add", "NET_ADMIN", "--cap-add", "NET_BIND_SERVICE"}
}
