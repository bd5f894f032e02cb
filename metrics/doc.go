// Package metrics owns ferry's Prometheus metrics: one private registry (no
// global state) with the Go and process collectors and ferry's own
// collectors, served by Handler on the HTTP listener's /metrics.
//
// Two kinds of sources feed it. Events that happen per request (a refused
// credential or allocation, a denied peer, a permission or channel created)
// are counted as they happen through the server.Observer methods and the
// pion EventHandler that Events returns; every label set is created up front
// at zero, so counting allocates nothing. Counts kept on the per-packet
// paths (relayed packets and bytes on each allocation's relay.Tracker state,
// dropped packets and Binding requests on the edge package's per-socket
// shards) stay atomics where they are and are read only at scrape time by a
// custom Collector: nothing per packet calls into Prometheus.
//
// Names follow ferry_<subsystem>_<name>_total for counters; see the Grafana
// dashboard in docker/ for what they are meant to show.
package metrics
