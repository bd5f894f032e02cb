package cli

import (
	"fmt"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

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
