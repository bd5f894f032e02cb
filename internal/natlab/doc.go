// Package natlab runs ferry's NAT lab for tests: network namespaces joined
// by veth pairs, a "public" segment where ferry listens on two addresses,
// and clients behind iptables NATs of distinct behaviours.
//
// The topology is scripts/natlab.sh's, which Up runs (so people and tests
// see the same lab) under a name unique to the test process; the lab is
// torn down at test cleanup, and labs left behind by test processes that
// died are removed on the next Up. Up skips the test when namespaces cannot
// be made, unless CI=true, where that is a failure.
//
// Processes run inside the namespaces through `ip netns exec`: the ferry
// binary (BuildFerry, StartFerry) and the test binary itself re-executed as
// a helper (Helper, RunHelper) for the hole-punching and relay clients.
package natlab
