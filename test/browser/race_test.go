//go:build race

package browser

// raceEnabled reports whether the test binary (and so the ferry binary it
// builds) uses the race detector.
const raceEnabled = true
