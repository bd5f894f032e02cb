package bench

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fdsNeeded is how many file descriptors a run may hold at once: a client
// socket per allocation (plus its echo peer in relay mode), and some spare
// for the runtime, /proc reads and stdio.
func (c Config) fdsNeeded() uint64 {
	const spare = 64
	n := uint64(c.Allocations)
	if c.Mode == ModeRelay {
		n *= 2
	}
	return n + spare
}

// raiseNofile makes sure RLIMIT_NOFILE admits need descriptors: Go raises
// the soft limit to the hard one at start, which is often not enough for
// tens of thousands of sockets. Raising the hard limit needs privilege
// (CAP_SYS_RESOURCE); without it the error says what to do.
func raiseNofile(need uint64) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit(RLIMIT_NOFILE): %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	want := unix.Rlimit{Cur: need, Max: max(lim.Max, need)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("this run needs %d file descriptors, RLIMIT_NOFILE is %d (hard %d) and raising it failed: %w (raise it with `ulimit -n %d` as root)",
			need, lim.Cur, lim.Max, err, need)
	}
	return nil
}
