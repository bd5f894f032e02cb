package testutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ModuleRoot returns the directory of ferry's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// BuildFerry runs `go build -o dir/ferry ./cmd/ferry` in the module root,
// with -race when the tests run with it, and returns the binary's path.
// It takes no testing.TB so that TestMain can build once per package
// (sync.OnceValues) into a directory it removes.
func BuildFerry(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ferry")
	args := []string{"build", "-o", bin}
	if RaceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/ferry")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), root, err, out)
	}
	fmt.Fprintf(os.Stderr, "built ferry (race=%v) in %v\n", RaceEnabled, time.Since(start).Round(time.Millisecond))
	return bin, nil
}

// MainWithFerry is the body of TestMain for a package whose tests run the
// ferry binary: *build is set to build it once, on first use (BuildFerry),
// into a temporary directory removed after the tests. It returns m.Run's
// exit code.
func MainWithFerry(m *testing.M, pkg string, build *func() (string, error)) int {
	dir, err := os.MkdirTemp("", "ferry-"+pkg+"-")
	if err != nil {
		fmt.Fprintln(os.Stderr, pkg+":", err)
		return 1
	}
	defer os.RemoveAll(dir)
	*build = sync.OnceValues(func() (string, error) { return BuildFerry(dir) })
	return m.Run()
}
