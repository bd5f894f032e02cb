//go:build !race

package testutil

// RaceEnabled reports whether the test binary is built with the race
// detector (and so BuildFerry builds ferry with it).
const RaceEnabled = false
