package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryrtc/ferry/cluster"
)

// ByteBudget is the per-user byte budget (quota.user-bytes).
type ByteBudget interface {
	Stats() cluster.BudgetStats
}

// budgetCollector reads the byte budget when scraped; without one it
// exports nothing.
type budgetCollector struct {
	src          ByteBudget
	rounds, over *prometheus.Desc
}

func newBudgetCollector(src ByteBudget) *budgetCollector {
	return &budgetCollector{
		src: src,
		rounds: prometheus.NewDesc("ferry_byte_budget_rounds_total",
			"Rounds (one a second) of counting users' relayed bytes against quota.user-bytes, by result: cluster (counted in the cluster's Redis), fallback (Redis did not answer: this node's own count decided), local (no cluster).", []string{"result"}, nil),
		over: prometheus.NewDesc("ferry_byte_budget_users_over_total",
			"Users found over their byte budget for the period (their allocations closed, Allocate refused with 486 until the next period).", nil, nil),
	}
}

func (c *budgetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.rounds
	ch <- c.over
}

func (c *budgetCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src == nil {
		return
	}
	st := c.src.Stats()
	for _, r := range []struct {
		name string
		v    uint64
	}{{"cluster", st.Updates}, {"fallback", st.Fallbacks}, {"local", st.Local}} {
		ch <- prometheus.MustNewConstMetric(c.rounds, prometheus.CounterValue, float64(r.v), r.name)
	}
	ch <- prometheus.MustNewConstMetric(c.over, prometheus.CounterValue, float64(st.Overs))
}
