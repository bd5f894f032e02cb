package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryrtc/ferry/cluster"
)

// Cluster is this node's view of the cluster (*cluster.Registry).
type Cluster interface {
	Up() bool
	Nodes() []cluster.Node
	Stats() cluster.Stats
}

// ClusterQuota is the cluster-wide user quota (*cluster.UserQuota).
type ClusterQuota interface {
	Stats() cluster.QuotaStats
}

// clusterCollector reads the registry when scraped; with no cluster
// configured it exports nothing.
type clusterCollector struct {
	src                    Cluster
	up, nodes, allocations *prometheus.Desc
	heartbeats, malformed  *prometheus.Desc
	redisErrors            *prometheus.Desc
	quota                  ClusterQuota
	quotaChecks            *prometheus.Desc
}

func newClusterCollector(src Cluster, quota ClusterQuota) *clusterCollector {
	return &clusterCollector{
		src:   src,
		quota: quota,
		quotaChecks: prometheus.NewDesc("ferry_cluster_quota_checks_total",
			"Cluster-wide per-user quota checks of new allocations, by result: acquired, refused (486), fallback (Redis did not answer: this node's own limit held), released (an allocation's end taken off), lost_release (an end not taken off in Redis; the next resync repairs it).", []string{"result"}, nil),
		up: prometheus.NewDesc("ferry_cluster_redis_up",
			"1 when this node's last round with the cluster's Redis succeeded; 0 while Redis is away (the node serves on its own limits).", nil, nil),
		nodes: prometheus.NewDesc("ferry_cluster_nodes",
			"Nodes in the cluster's registry as this node reads it, by state (ready, draining).", []string{"state"}, nil),
		allocations: prometheus.NewDesc("ferry_cluster_allocations",
			"Live allocations of the cluster's nodes, as they last reported them.", nil, nil),
		heartbeats: prometheus.NewDesc("ferry_cluster_heartbeats_total",
			"Registry entries this node wrote.", nil, nil),
		malformed: prometheus.NewDesc("ferry_cluster_malformed_total",
			"Registry entries of other nodes skipped as malformed.", []string{"kind"}, nil),
		redisErrors: prometheus.NewDesc("ferry_cluster_redis_errors_total",
			"Rounds with the cluster's Redis that failed.", nil, nil),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.nodes, c.allocations, c.heartbeats, c.malformed, c.redisErrors, c.quotaChecks} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src == nil {
		return
	}
	up := 0.0
	if c.src.Up() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	states := map[string]int{cluster.StateReady: 0, cluster.StateDraining: 0}
	allocs := 0
	for _, n := range c.src.Nodes() {
		states[n.State]++
		allocs += n.Load.Allocations
	}
	for s, n := range states {
		ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(n), s)
	}
	ch <- prometheus.MustNewConstMetric(c.allocations, prometheus.GaugeValue, float64(allocs))
	st := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(c.heartbeats, prometheus.CounterValue, float64(st.Heartbeats))
	ch <- prometheus.MustNewConstMetric(c.malformed, prometheus.CounterValue, float64(st.Malformed), "registry")
	ch <- prometheus.MustNewConstMetric(c.redisErrors, prometheus.CounterValue, float64(st.RedisErrors))
	if c.quota != nil {
		q := c.quota.Stats()
		for _, r := range []struct {
			name string
			v    uint64
		}{{"acquired", q.Acquired}, {"refused", q.Refused}, {"fallback", q.Fallbacks}, {"released", q.Released}, {"lost_release", q.LostReleases}} {
			ch <- prometheus.MustNewConstMetric(c.quotaChecks, prometheus.CounterValue, float64(r.v), r.name)
		}
	}
}
