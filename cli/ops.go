package cli

import (
	"context"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// drainTick is how often a drain checks whether allocations are left.
const drainTick = 200 * time.Millisecond

// drain stops granting allocations and lets the existing ones relay until
// none is left, timeout has passed, ctx ends or another SIGTERM or SIGINT
// arrives. SIGHUP still reloads (onHUP).
func drain(ctx context.Context, srv turnServer, timeout time.Duration, sigs <-chan os.Signal, onHUP func(), log *slog.Logger) {
	srv.Drain()
	if timeout <= 0 {
		return
	}
	log.Info("draining: refusing new allocations, relaying existing ones",
		"allocations", srv.AllocationCount(), "timeout", timeout.String())
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(drainTick)
	defer tick.Stop()
	for {
		if n := srv.AllocationCount(); n == 0 {
			log.Info("drained: no allocations left")
			return
		}
		select {
		case <-deadline.C:
			log.Info("drain timeout reached; closing the remaining allocations", "allocations", srv.AllocationCount())
			return
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				onHUP()
				continue
			}
			log.Info("second signal: stopping without waiting", "signal", sig.String(), "allocations", srv.AllocationCount())
			return
		case <-tick.C:
		}
	}
}
