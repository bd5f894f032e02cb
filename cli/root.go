package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// env is what commands read from and write to, injected for tests.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string
	// signals delivers SIGHUP/SIGINT/SIGTERM to serve.
	signals func() (<-chan os.Signal, func())
}

// Main runs ferry with args and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{
		stdin: stdin, stdout: stdout, stderr: stderr,
		environ: os.Environ(),
		signals: func() (<-chan os.Signal, func()) {
			ch := make(chan os.Signal, 4)
			signal.Notify(ch, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
			return ch, func() { signal.Stop(ch) }
		},
	}
	return run(context.Background(), e, args)
}

func run(ctx context.Context, e *env, args []string) int {
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(e.stderr, "ferry:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "ferry",
		Short: "ferry is a STUN/TURN server for WebRTC",
		Long: `ferry is a STUN (RFC 8489) and TURN (RFC 8656) server for WebRTC apps.

Run 'ferry serve' with no config to try it: it listens on UDP and TCP 3478,
makes a secret for the run and prints an iceServers list to paste into
new RTCPeerConnection({iceServers}) or new Peer({config: {iceServers}}).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServe(e), newVersion(e), newConfigCmd(e), newCreds(e), newProbe(e), newBench(e), newHealthcheck(e), newUsage(e))
	return root
}

func newVersion(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ferry's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(e.stdout, "ferry", Version())
			return nil
		},
	}
}

// buildVersion is the version the build scripts stamp at link time
// (docker/build.sh: -ldflags "-X github.com/ferryrtc/ferry/cli.buildVersion=$(git describe)");
// empty otherwise. It is never written at run time.
var buildVersion string

// Version is the version the binary was built as, and the VCS revision it
// was built from, and the Go version.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = &debug.BuildInfo{GoVersion: "unknown Go"}
	}
	return version(buildVersion, bi)
}

// version formats the version of a binary stamped with stamped (may be
// empty) and built as bi.
func version(stamped string, bi *debug.BuildInfo) string {
	v := stamped
	if v == "" {
		// A module version (go install ...@v1.2.0), or the pseudo-version
		// go build derives from the VCS, or "(devel)".
		v = bi.Main.Version
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
		if rev == "" {
			v += " (no VCS revision: go run and -buildvcs=false leave it out; go build in a git checkout or docker/build.sh put it in)"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		if !strings.Contains(v, rev[:min(len(rev), 7)]) {
			v += " (" + rev + ")"
		}
	}
	return v + " " + bi.GoVersion
}
