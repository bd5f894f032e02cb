package cluster

import (
	"cmp"
	"slices"
)

// Place picks up to n nodes for a new call: ready ones only, those of
// region first when region is given and any is in it, then the least
// loaded (fewest live allocations, then least traffic, then least CPU),
// ties broken by ID so that every node answers alike.
func Place(nodes []Node, region string, n int) []Node {
	ready := make([]Node, 0, len(nodes))
	for _, nd := range nodes {
		if nd.State == StateReady && nd.PublicHost != "" && len(nd.Listeners) > 0 {
			ready = append(ready, nd)
		}
	}
	inRegion := func(nd Node) int {
		if region != "" && nd.Region == region {
			return 0
		}
		return 1
	}
	slices.SortFunc(ready, func(a, b Node) int {
		return cmp.Or(
			cmp.Compare(inRegion(a), inRegion(b)),
			cmp.Compare(a.Load.Allocations, b.Load.Allocations),
			cmp.Compare(a.Load.BitsPerSecond, b.Load.BitsPerSecond),
			cmp.Compare(a.Load.CPU, b.Load.CPU),
			cmp.Compare(a.ID, b.ID),
		)
	})
	return ready[:min(n, len(ready))]
}
