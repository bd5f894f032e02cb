// Package metrics owns ferry's Prometheus metrics: one private registry (no
// global state) with the Go and process collectors and one collector of
// ferry's own, served by Handler on the HTTP listener's /metrics.
//
// The engine counts on its own paths, with per-shard atomics written by the
// shard's loop alone (and the allocation counters of RFC 6062 data
// connections); the collector reads a Snapshot of them when scraped, so
// nothing per packet or per request calls into Prometheus. Every label set
// is exported at zero before it first counts.
//
// Names follow ferry_<subsystem>_<name>_total for counters; see the Grafana
// dashboard in docker/ for what they are meant to show.
package metrics
