package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps test-only packages out of the ferry binary (tailscale's
// cmd/derper TestDeps is the model).
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		var stderr []byte
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	forbidden := map[string]bool{
		"testing": true,
		"github.com/ferryrtc/ferry/internal/testutil": true,
		"github.com/ferryrtc/ferry/internal/natlab":   true,
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %q", deps)
	}
	for _, dep := range deps {
		if forbidden[dep] {
			t.Errorf("ferry depends on %s, a test-only package", dep)
		}
	}
}
