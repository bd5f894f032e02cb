//go:build race

package bench

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// x/net's batch I/O allocates and allocation counts mean nothing.
const raceEnabled = true
