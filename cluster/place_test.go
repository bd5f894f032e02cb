package cluster

import (
	"slices"
	"testing"
)

func TestPlace(t *testing.T) {
	nd := func(id, region, state string, allocs int, bps float64) Node {
		return Node{ID: id, Region: region, State: state, PublicHost: id + ".example.com",
			Listeners: []string{"udp://" + id + ".example.com:3478"}, Load: Load{Allocations: allocs, BitsPerSecond: bps}}
	}
	nodes := []Node{
		nd("a", "eu", StateReady, 10, 0),
		nd("b", "eu", StateReady, 3, 0),
		nd("c", "us", StateReady, 1, 0),
		nd("d", "us", StateDraining, 0, 0),
		nd("e", "us", StateReady, 1, 500),
		{ID: "f", State: StateReady, Load: Load{}}, // no host or listeners: not placeable
	}
	tests := []struct {
		name   string
		region string
		n      int
		want   []string
	}{
		{"least loaded anywhere", "", 2, []string{"c", "e"}},
		{"caller's region first", "eu", 2, []string{"b", "a"}},
		{"region then the rest", "eu", 3, []string{"b", "a", "c"}},
		{"unknown region is no preference", "ap", 2, []string{"c", "e"}},
		{"more than there are", "", 10, []string{"c", "e", "b", "a"}},
		{"one", "us", 1, []string{"c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, n := range Place(slices.Clone(nodes), tt.region, tt.n) {
				got = append(got, n.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Place(%q, %d) = %v, want %v", tt.region, tt.n, got, tt.want)
			}
		})
	}
	if got := Place(nil, "", 2); len(got) != 0 {
		t.Fatalf("Place of nothing = %v", got)
	}
}
