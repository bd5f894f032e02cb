package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether CI=true, where what the tests need must be there.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips t because something it needs is missing, or fails it
// when CI=true: CI installs every tool (scripts/install-test-deps.sh), so
// there a missing one is a failure, not a skip.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatal("CI=true: " + msg)
	}
	t.Skip(msg)
}

// RequireTool returns the path of the executable name; when it is missing
// the test is skipped, or fails with CI=true (see Unavailable).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not found (run scripts/install-test-deps.sh): %v", name, err)
	}
	return path
}
