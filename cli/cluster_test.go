package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/redis/go-redis/v9"

	"github.com/ferryrtc/ferry/cluster"
	"github.com/ferryrtc/ferry/internal/testutil"
)

// metricValue reads one series of sf's /metrics, -1 when absent.
func (sf *servingFerry) metricValue(t *testing.T, series string) float64 {
	t.Helper()
	_, body := sf.get(t, "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestServeJoinsCluster: two nodes on one Redis see each other in their
// registry; a draining node is seen draining at once; a node that stops
// leaves it at once.
func TestServeJoinsCluster(t *testing.T) {
	rs := testutil.StartRedis(t)
	node := func(id string) string {
		return fmt.Sprintf("cluster:\n  redis: %s\n  node-id: %s\n  key-prefix: 'test:'\n", rs.URL(), id)
	}
	n1 := startServing(t, 10*time.Second, node("n1"))
	n2 := startServing(t, 10*time.Second, node("n2"))
	ready, draining := `ferry_cluster_nodes{state="ready"}`, `ferry_cluster_nodes{state="draining"}`
	testutil.WaitFor(t, 5*time.Second, "both nodes to see both", func() bool {
		return n1.metricValue(t, ready) == 2 && n2.metricValue(t, ready) == 2
	})
	if up := n1.metricValue(t, "ferry_cluster_redis_up"); up != 1 {
		t.Fatalf("ferry_cluster_redis_up = %v", up)
	}
	// n2 drains with an allocation open, so it stays draining.
	client := n2.turnClient(t)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	n2.te.sigs <- syscall.SIGTERM
	testutil.WaitFor(t, 3*time.Second, "n1 to see n2 draining", func() bool {
		return n1.metricValue(t, ready) == 1 && n1.metricValue(t, draining) == 1
	})
	// The allocation released, n2's drain ends and it leaves.
	_ = relay.Close()
	client.Close()
	select {
	case <-n2.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("n2 did not finish draining")
	}
	testutil.WaitFor(t, 3*time.Second, "n1 to see n2 gone", func() bool {
		return n1.metricValue(t, ready) == 1 && n1.metricValue(t, draining) == 0
	})
}

// TestServePlacesOnLeastLoaded: POST /v1/credentials on any node names the
// least-loaded ready nodes, the caller's region first.
func TestServePlacesOnLeastLoaded(t *testing.T) {
	rs := testutil.StartRedis(t)
	const apiKey = "api-key-0123456789abcdef"
	node := func(id, region string) *servingFerry {
		return startServingYAML(t, servingYAML(10*time.Second, "  secrets: [cluster-secret]\n", "  api-keys: ["+apiKey+"]\n  rate: 6000\n  burst: 1000\n")+
			fmt.Sprintf("cluster:\n  redis: %s\n  node-id: %s\n  region: %s\n  public-host: %s.test\n  key-prefix: 'place:'\n", rs.URL(), id, region, id))
	}
	n1, n2, n3 := node("n1", "us"), node("n2", "us"), node("n3", "eu")
	testutil.WaitFor(t, 5*time.Second, "all three registered", func() bool {
		return n1.metricValue(t, `ferry_cluster_nodes{state="ready"}`) == 3
	})
	// n1 carries a call: it is the most loaded.
	client := n1.turnClient(t)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	testutil.WaitFor(t, 5*time.Second, "n1's load to show on every node", func() bool {
		return n1.metricValue(t, "ferry_cluster_allocations") == 1 && n2.metricValue(t, "ferry_cluster_allocations") == 1 &&
			n3.metricValue(t, "ferry_cluster_allocations") == 1
	})
	hosts := func(sf *servingFerry, query string) string {
		req, _ := http.NewRequest("POST", sf.http+"/v1/credentials"+query, nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var c struct {
			ICEServers []struct {
				URLs     []string `json:"urls"`
				Username string   `json:"username"`
			} `json:"iceServers"`
		}
		if err := json.NewDecoder(res.Body).Decode(&c); err != nil || res.StatusCode != 200 {
			t.Fatalf("POST /v1/credentials%s: %d %v", query, res.StatusCode, err)
		}
		var out []string
		for _, u := range c.ICEServers[len(c.ICEServers)-1].URLs {
			h := strings.TrimPrefix(u, "turn:")
			out = append(out, h[:strings.IndexByte(h, ':')])
		}
		return strings.Join(slices.Compact(out), " ")
	}
	// n2 and n3 carry nothing: which comes first depends on their CPU.
	for _, on := range []*servingFerry{n1, n3} {
		got := strings.Fields(hosts(on, ""))
		slices.Sort(got)
		if strings.Join(got, " ") != "n2.test n3.test" {
			t.Errorf("placement: %v, want n2 and n3", got)
		}
	}
	for _, c := range []struct {
		query string
		want  string
	}{
		{"?region=eu", "n3.test n2.test"},
		{"?region=us", "n2.test n1.test"},
	} {
		if got := hosts(n2, c.query); got != c.want {
			t.Errorf("placement%s: %s, want %s", c.query, got, c.want)
		}
	}

	// A node that stops heartbeating (a crash: its entry is not taken
	// out) drops out of placement within the entry's TTL.
	rc, err := cluster.Dial(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ctx := context.Background()
	entry := `{"id":"ghost","region":"eu","public_host":"ghost.test","listeners":["udp://ghost.test:3478"],"state":"ready","load":{},"updated":"2026-01-01T00:00:00Z"}`
	const ttl = 3 * time.Second
	rc.Set(ctx, "place:node:ghost", entry, ttl)
	rc.ZAdd(ctx, "place:nodes", redis.Z{Score: float64(time.Now().Add(ttl).UnixMilli()), Member: "ghost"})
	testutil.WaitFor(t, 3*time.Second, "the ghost node in placement", func() bool {
		return strings.Contains(hosts(n2, "?region=eu"), "ghost.test")
	})
	testutil.WaitFor(t, 2*ttl, "the ghost node to drop out of placement", func() bool {
		return !strings.Contains(hosts(n2, "?region=eu"), "ghost.test")
	})

	// A draining node fails /readyz and leaves placement (a call keeps
	// it draining).
	c3 := n3.turnClient(t)
	r3, err := c3.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	n3.te.sigs <- syscall.SIGTERM
	testutil.WaitFor(t, 3*time.Second, "n3 to fail /readyz", func() bool {
		code, _ := n3.get(t, "/readyz")
		return code == http.StatusServiceUnavailable
	})
	testutil.WaitFor(t, 3*time.Second, "n3 out of placement", func() bool {
		return !strings.Contains(hosts(n2, "?region=eu"), "n3.test")
	})
	if got := hosts(n1, "?region=eu"); got != "n2.test n1.test" {
		t.Errorf("placement with n3 draining: %s, want n2.test n1.test", got)
	}
}

// TestServeRedirectsWhenDraining: a draining node answers a new Allocate
// with 300 and the address of a ready node, where the client allocates.
func TestServeRedirectsWhenDraining(t *testing.T) {
	rs := testutil.StartRedis(t)
	node := func(id string) *servingFerry {
		return startServing(t, 20*time.Second, fmt.Sprintf("cluster:\n  redis: %s\n  node-id: %s\n  public-host: 127.0.0.1\n  key-prefix: 'redirect:'\n  nonce-secret: shared-nonce-secret-0123\n", rs.URL(), id))
	}
	n1, n2 := node("n1"), node("n2")
	testutil.WaitFor(t, 5*time.Second, "both registered", func() bool {
		return n2.metricValue(t, `ferry_cluster_nodes{state="ready"}`) == 2
	})
	// n2 drains, kept draining by a live allocation.
	live := n2.turnClient(t)
	relay, err := live.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	n2.te.sigs <- syscall.SIGTERM
	waitForText(t, n2.te.stderr, "draining: refusing new allocations")

	c := newRawClient(t)
	res := c.allocate(t, n2.udp, nil)
	var ec stun.ErrorCodeAttribute
	var alt stun.AlternateServer
	var nonce stun.Nonce
	if ec.GetFrom(res) != nil || ec.Code != 300 || alt.GetFrom(res) != nil || nonce.GetFrom(res) != nil {
		t.Fatalf("Allocate on the draining node: %v", res)
	}
	if got := (&net.UDPAddr{IP: alt.IP, Port: alt.Port}).String(); got != n1.udp {
		t.Fatalf("ALTERNATE-SERVER %s, want n1's %s", got, n1.udp)
	}
	// The 300's nonce is good on n1 (the nodes share cluster.nonce-secret):
	// no new challenge.
	if res := c.allocate(t, n1.udp, nonce); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("Allocate on the alternate with the redirect's nonce: %v", res)
	}
	if v := n2.metricValue(t, `ferry_allocations_refused_total{reason="redirected"}`); v != 1 {
		t.Fatalf("redirects counted: %v", v)
	}
}

// rawClient sends Allocates from one UDP socket.
type rawClient struct{ conn net.PacketConn }

func newRawClient(t *testing.T) *rawClient {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &rawClient{conn}
}

// allocate sends an authenticated UDP Allocate to addr with nonce, or
// with the nonce of a first, unauthenticated one when nonce is nil, and
// returns the answer.
func (c *rawClient) allocate(t *testing.T, addr string, nonce stun.Nonce) *stun.Message {
	t.Helper()
	to, _ := net.ResolveUDPAddr("udp4", addr)
	rt := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	do := func(setters ...stun.Setter) *stun.Message {
		req := stun.MustBuild(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest), rt}, setters...)...)
		if _, err := c.conn.WriteTo(req.Raw, to); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if err := res.Decode(); err != nil {
			t.Fatal(err)
		}
		return res
	}
	if nonce == nil {
		if err := nonce.GetFrom(do(stun.Fingerprint)); err != nil {
			t.Fatal(err)
		}
	}
	return do(stun.NewUsername(drainUser), stun.NewRealm(drainRealm), nonce,
		stun.NewLongTermIntegrity(drainUser, drainRealm, drainPass), stun.Fingerprint)
}

// TestServeRevocationAcrossNodes: a revocation recorded on one node ends a
// live relayed call on another within a second, and refuses its next
// Allocate; lifting it lets the user allocate again.
func TestServeRevocationAcrossNodes(t *testing.T) {
	rs := testutil.StartRedis(t)
	node := func(id string) *servingFerry {
		return startServing(t, 10*time.Second, fmt.Sprintf("cluster:\n  redis: %s\n  node-id: %s\n  key-prefix: 'revoke:'\n", rs.URL(), id))
	}
	n1, n2 := node("n1"), node("n2")
	// A live call on n2.
	client := n2.turnClient(t)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	peer := testutil.EchoPeer(t, "udp4", "127.0.0.1:0")
	if err := relayEcho(relay, peer.LocalAddr(), "before"); err != nil {
		t.Fatal(err)
	}
	// Revoked through n1's admin API.
	req, _ := http.NewRequest("POST", n1.http+"/v1/admin/revocations", strings.NewReader(`{"user":"`+drainUser+`","reason":"test"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST revocations: %d", res.StatusCode)
	}
	start := time.Now()
	testutil.WaitFor(t, 3*time.Second, "n2 to close the call", func() bool {
		return n2.metricValue(t, `ferry_allocations_ended_total{reason="admin"}`) == 1
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("the call ended %v after the revocation", d)
	}
	if code := allocateCode(t, n2.udp); code != 401 {
		t.Fatalf("Allocate after revocation: %d, want 401", code)
	}
	if code, body := n2.get(t, "/v1/admin/revocations"); code != 200 || !strings.Contains(body, `"name": "`+drainUser+`"`) {
		t.Fatalf("GET revocations on n2: %d %s", code, body)
	}
	// Lifted through n2.
	req, _ = http.NewRequest("DELETE", n2.http+"/v1/admin/revocations?user="+drainUser, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if res, err = http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("DELETE revocations: %v %v", res, err)
	}
	res.Body.Close()
	testutil.WaitFor(t, 3*time.Second, "n1 to allow alice again", func() bool { return allocateCode(t, n1.udp) == 0 })
}

// allocateCode allocates on addr as the test user: 0 on success, else the
// error code.
func allocateCode(t *testing.T, addr string) int {
	t.Helper()
	res := newRawClient(t).allocate(t, addr, nil)
	var ec stun.ErrorCodeAttribute
	if res.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	if ec.GetFrom(res) != nil {
		t.Fatalf("no ERROR-CODE in %v", res)
	}
	return int(ec.Code)
}

// TestServeUsageRecords: what a node relays shows in `ferry usage`, from
// the cluster's Redis Stream and from a file, within 1%.
func TestServeUsageRecords(t *testing.T) {
	rs := testutil.StartRedis(t)
	file := filepath.Join(t.TempDir(), "usage.jsonl")
	n := startServing(t, 10*time.Second, fmt.Sprintf("cluster:\n  redis: %s\n  node-id: u1\n  key-prefix: 'usage:'\nusage:\n  file: %s\n", rs.URL(), file))
	client := n.turnClient(t)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	peer := testutil.EchoPeer(t, "udp4", "127.0.0.1:0")
	const rounds, size = 200, 500
	msg := strings.Repeat("x", size)
	for i := range rounds {
		if err := relayEcho(relay, peer.LocalAddr(), msg); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	_ = relay.Close() // Refresh 0: the allocation ends, its record is final
	client.Close()
	testutil.WaitFor(t, 5*time.Second, "the allocation to end", func() bool {
		return n.metricValue(t, `ferry_allocations_ended_total{reason="client"}`) == 1
	})
	usage := func(args ...string) map[string]any {
		te := newCLIEnv()
		var out struct {
			Users []map[string]any `json:"users"`
		}
		testutil.WaitFor(t, 5*time.Second, "the record in ferry usage "+strings.Join(args, " "), func() bool {
			te.stdout.Reset()
			if code := te.run(append([]string{"usage", "--json", "--since", "1h"}, args...)...); code != 0 {
				t.Fatalf("ferry usage: exit %d: %s", code, te.stderr)
			}
			if err := json.Unmarshal([]byte(te.stdout.String()), &out); err != nil {
				t.Fatalf("ferry usage --json: %v\n%s", err, te.stdout)
			}
			return len(out.Users) == 1
		})
		return out.Users[0]
	}
	for name, u := range map[string]map[string]any{
		"redis": usage("--cluster-redis", rs.URL(), "--cluster-key-prefix", "usage:"),
		"file":  usage("--file", file),
	} {
		want := float64(rounds * size)
		for _, k := range []string{"to_peer_bytes", "from_peer_bytes"} {
			if got := u[k].(float64); got < want*0.99 || got > want*1.01 {
				t.Errorf("%s: %s = %v, want %v within 1%%", name, k, got, want)
			}
		}
		if u["user"] != drainUser || u["allocations"] != 1.0 {
			t.Errorf("%s: %+v", name, u)
		}
	}
}

// TestServeUserQuotaAcrossNodes: quota.user-allocations holds across three
// nodes (the Allocate past it on any node gets 486, an end gives the place
// back); with Redis killed every node keeps allocating under its own
// limit and says so, and with Redis back the cluster-wide limit holds
// again.
func TestServeUserQuotaAcrossNodes(t *testing.T) {
	rs := testutil.StartRedis(t)
	node := func(id string) *servingFerry {
		return startServing(t, 10*time.Second, fmt.Sprintf("quota:\n  user-allocations: 2\ncluster:\n  redis: %s\n  node-id: %s\n  key-prefix: 'quota:'\n", rs.URL(), id))
	}
	nodes := []*servingFerry{node("n1"), node("n2"), node("n3")}
	testutil.WaitFor(t, 5*time.Second, "all three registered", func() bool {
		return nodes[0].metricValue(t, `ferry_cluster_nodes{state="ready"}`) == 3
	})
	hold := func(n *servingFerry) (func(), error) {
		c := n.turnClient(t)
		relay, err := c.Allocate()
		if err != nil {
			return nil, err
		}
		return func() { _ = relay.Close(); c.Close() }, nil
	}
	r1, err := hold(nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	r2, err := hold(nodes[1])
	if err != nil {
		t.Fatal(err)
	}
	defer r2()
	// The third, on the third node: 486.
	if code := allocateCode(t, nodes[2].udp); code != 486 {
		t.Fatalf("alice's third allocation, on n3: %d, want 486", code)
	}
	// One ends: its place comes back.
	r1()
	testutil.WaitFor(t, 5*time.Second, "n3 to admit alice again", func() bool { return allocateCode(t, nodes[2].udp) == 0 })
	// That one holds on (10 minutes): alice is at 2 again.
	if code := allocateCode(t, nodes[0].udp); code != 486 {
		t.Fatalf("alice past the quota again: %d, want 486", code)
	}

	// Redis dies: every node serves on under its own limit.
	rs.Kill(t)
	testutil.WaitFor(t, 5*time.Second, "n1 to see Redis down", func() bool {
		return nodes[0].metricValue(t, "ferry_cluster_redis_up") == 0
	})
	if code := allocateCode(t, nodes[0].udp); code != 0 {
		t.Fatalf("Allocate on n1 with Redis down: %d, want success under n1's own limit", code)
	}
	if nodes[0].metricValue(t, `ferry_cluster_quota_checks_total{result="fallback"}`) < 1 {
		t.Fatal("the fallback was not counted")
	}
	// Redis back (empty): the nodes rewrite their counts and the limit
	// holds across them again.
	rs.Start(t)
	testutil.WaitFor(t, 10*time.Second, "Redis back and the quota enforced again", func() bool {
		return nodes[0].metricValue(t, "ferry_cluster_redis_up") == 1 && allocateCode(t, nodes[1].udp) == 486
	})
}

// TestServeByteBudgetAcrossNodes: alice relays through two nodes; when
// her bytes together pass quota.user-bytes both nodes close her
// allocations and refuse new ones with 486.
func TestServeByteBudgetAcrossNodes(t *testing.T) {
	rs := testutil.StartRedis(t)
	node := func(id string) *servingFerry {
		return startServing(t, 10*time.Second, fmt.Sprintf("quota:\n  user-bytes: 1000000\n  user-bytes-period: 1h\ncluster:\n  redis: %s\n  node-id: %s\n  key-prefix: 'budget:'\n", rs.URL(), id))
	}
	nodes := []*servingFerry{node("n1"), node("n2")}
	echo := testutil.EchoPeer(t, "udp4", "127.0.0.1:0")
	// relay sends count 1000-byte datagrams through n's relay and
	// back: 2,000 bytes each.
	relay := func(n *servingFerry, count int) net.PacketConn {
		c := n.turnClient(t)
		conn, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.Repeat("x", 1000)
		for i := range count {
			if err := relayEcho(conn, echo.LocalAddr(), msg); err != nil {
				t.Fatalf("round %d through %s: %v", i, n.udp, err)
			}
		}
		return conn
	}
	relay(nodes[0], 300) // 600,000 bytes on n1
	// Still under: both admit her.
	time.Sleep(1500 * time.Millisecond)
	for _, n := range nodes {
		if code := allocateCode(t, n.udp); code != 0 {
			t.Fatalf("alice at 600,000 bytes, on %s: %d, want success", n.udp, code)
		}
	}
	relay(nodes[1], 250) // 500,000 more on n2: 1,100,000
	for _, n := range nodes {
		testutil.WaitFor(t, 5*time.Second, "both nodes to close alice's allocations and refuse her", func() bool {
			return n.metricValue(t, `ferry_allocations_ended_total{reason="budget"}`) >= 1 && allocateCode(t, n.udp) == 486
		})
	}
	if got := nodes[0].metricValue(t, `ferry_byte_budget_users_over_total`); got != 1 {
		t.Fatalf("n1 found %v users over, want 1", got)
	}
	if got := nodes[0].metricValue(t, `ferry_allocations_refused_total{reason="budget"}`); got < 1 {
		t.Fatalf("n1 counted %v refusals for the budget", got)
	}
}

// TestServeAdminAcrossNodes: any node lists every node's allocations and
// closes a user's allocations on all of them (?scope=cluster).
func TestServeAdminAcrossNodes(t *testing.T) {
	rs := testutil.StartRedis(t)
	node := func(id string) *servingFerry {
		return startServing(t, 10*time.Second, fmt.Sprintf("cluster:\n  redis: %s\n  node-id: %s\n  key-prefix: 'admin:'\n", rs.URL(), id))
	}
	nodes := []*servingFerry{node("n1"), node("n2"), node("n3")}
	testutil.WaitFor(t, 5*time.Second, "all three registered", func() bool {
		return nodes[2].metricValue(t, `ferry_cluster_nodes{state="ready"}`) == 3
	})
	for _, n := range []*servingFerry{nodes[0], nodes[1], nodes[1]} {
		if _, err := n.turnClient(t).Allocate(); err != nil {
			t.Fatal(err)
		}
	}
	var list struct {
		Count       int            `json:"count"`
		Nodes       map[string]int `json:"nodes"`
		Missing     []string       `json:"missing"`
		Allocations []struct {
			Node  string `json:"node"`
			User  string `json:"user"`
			Relay string `json:"relay"`
		} `json:"allocations"`
	}
	code, body := nodes[2].get(t, "/v1/admin/allocations?scope=cluster")
	if code != 200 {
		t.Fatalf("GET ?scope=cluster: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if list.Count != 3 || list.Nodes["n1"] != 1 || list.Nodes["n2"] != 2 || list.Nodes["n3"] != 0 || len(list.Missing) != 0 {
		t.Fatalf("cluster list %s", body)
	}
	for _, a := range list.Allocations {
		if a.User != drainUser || a.Node == "" || a.Relay == "" {
			t.Fatalf("allocation %+v in %s", a, body)
		}
	}
	if code, body := nodes[2].get(t, "/v1/admin/allocations?scope=galaxy"); code != 400 || !strings.Contains(body, "not node or cluster") {
		t.Fatalf("bad scope: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodDelete, nodes[2].http+"/v1/admin/users/"+drainUser+"/allocations?scope=cluster", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var closed struct {
		Closed int            `json:"closed"`
		Nodes  map[string]int `json:"nodes"`
	}
	err = json.NewDecoder(res.Body).Decode(&closed)
	_ = res.Body.Close()
	if err != nil || res.StatusCode != 200 || closed.Closed != 3 || closed.Nodes["n2"] != 2 {
		t.Fatalf("DELETE ?scope=cluster: %d %+v %v", res.StatusCode, closed, err)
	}
	for _, n := range nodes[:2] {
		if code, body := n.get(t, "/v1/admin/allocations"); code != 200 || !strings.Contains(body, `"count": 0`) {
			t.Fatalf("%s after the cluster-wide close: %d %s", n.http, code, body)
		}
	}
}

// TestServeRedisLoss: three nodes, Redis killed mid-test. Every node keeps
// relaying and allocating, says ferry_cluster_redis_up 0, and recovers
// when Redis returns; the usage records written before are still there,
// and those of the allocations that ended meanwhile arrive after.
func TestServeRedisLoss(t *testing.T) {
	rs := testutil.StartDurableRedis(t)
	node := func(id string) *servingFerry {
		return startServing(t, 10*time.Second, fmt.Sprintf("cluster:\n  redis: %s\n  node-id: %s\n  key-prefix: 'loss:'\n", rs.URL(), id))
	}
	nodes := []*servingFerry{node("n1"), node("n2"), node("n3")}
	testutil.WaitFor(t, 5*time.Second, "all three registered", func() bool {
		return nodes[0].metricValue(t, `ferry_cluster_nodes{state="ready"}`) == 3
	})
	echo := testutil.EchoPeer(t, "udp4", "127.0.0.1:0")
	// A call through n1 that ends before Redis dies: its record is in
	// the stream.
	c := nodes[0].turnClient(t)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if err := relayEcho(relay, echo.LocalAddr(), "before"); err != nil {
		t.Fatal(err)
	}
	_ = relay.Close()
	records := func() int {
		te := newCLIEnv()
		if code := te.run("usage", "--json", "--since", "1h", "--cluster-redis", rs.URL(), "--cluster-key-prefix", "loss:"); code != 0 {
			return -1
		}
		var out struct {
			Users []struct {
				Allocations int `json:"allocations"`
			} `json:"users"`
		}
		if json.Unmarshal([]byte(te.stdout.String()), &out) != nil || len(out.Users) != 1 {
			return 0
		}
		return out.Users[0].Allocations
	}
	testutil.WaitFor(t, 5*time.Second, "the first call's usage record", func() bool { return records() == 1 })

	// A call in progress on n2 when Redis dies.
	c2 := nodes[1].turnClient(t)
	live, err := c2.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	rs.Kill(t)
	for _, n := range nodes {
		testutil.WaitFor(t, 5*time.Second, "every node to see Redis down", func() bool {
			return n.metricValue(t, "ferry_cluster_redis_up") == 0
		})
	}
	if err := relayEcho(live, echo.LocalAddr(), "during"); err != nil {
		t.Fatalf("the live call stopped relaying without Redis: %v", err)
	}
	for _, n := range nodes {
		c := n.turnClient(t)
		r, err := c.Allocate()
		if err != nil {
			t.Fatalf("%s allocating without Redis: %v", n.udp, err)
		}
		if err := relayEcho(r, echo.LocalAddr(), "alone"); err != nil {
			t.Fatalf("%s relaying without Redis: %v", n.udp, err)
		}
		_ = r.Close()
	}
	_ = live.Close()

	rs.Start(t)
	for _, n := range nodes {
		testutil.WaitFor(t, 10*time.Second, "every node to see Redis back", func() bool {
			return n.metricValue(t, "ferry_cluster_redis_up") == 1
		})
	}
	// Nothing lost: the first record, plus the live call's and the three
	// made while Redis was away, queued and written now.
	testutil.WaitFor(t, 10*time.Second, "all five calls' usage records", func() bool { return records() == 5 })
	if code := allocateCode(t, nodes[2].udp); code != 0 {
		t.Fatalf("allocating after Redis returned: %d", code)
	}
}
