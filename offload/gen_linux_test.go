//go:build linux && (386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64)

package offload

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryrtc/ferry/internal/testutil"
)

// TestGeneratedObjectsMatchSource regenerates the BPF object and its Go
// bindings from bpf/ with the go:generate line of gen.go, into a temporary
// directory, and checks that the committed relay_bpfel.o and relay_bpfel.go
// are byte-identical to the result (clang's output is reproducible for the
// same compiler, flags and relative source path). A mismatch means bpf/
// changed without `go generate ./offload/`, or a different clang.
func TestGeneratedObjectsMatchSource(t *testing.T) {
	testutil.RequireTool(t, "clang")
	testutil.RequireTool(t, "llvm-strip")
	if _, err := os.Stat("/usr/include/bpf/bpf_helpers.h"); err != nil {
		testutil.Unavailable(t, "libbpf-dev headers missing (run scripts/install-test-deps.sh): %v", err)
	}
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(src), "\n") {
		if rest, ok := strings.CutPrefix(line, "//go:generate go tool bpf2go "); ok {
			args = strings.Fields(rest)
		}
	}
	if args == nil {
		t.Fatal("gen.go has no //go:generate go tool bpf2go line")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", append([]string{"tool", "bpf2go", "-output-dir", dir, "-go-package", "offload"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	clang, _ := exec.Command("clang", "--version").Output()
	for _, name := range []string{"relay_bpfel.o", "relay_bpfel.go"} {
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(committed, fresh) {
			t.Errorf("committed %s (%d bytes) differs from one generated from bpf/ (%d bytes) by %s; run go generate ./offload/",
				name, len(committed), len(fresh), strings.SplitN(string(clang), "\n", 2)[0])
		}
	}
}

// TestStatsLayout checks that Stats has a field for every reason of enum
// stat, in order.
func TestStatsLayout(t *testing.T) {
	var s Stats
	if got, want := len(statFields(&s)), int(relayStatSTAT_MAX); got != want {
		t.Fatalf("statFields has %d fields, enum stat %d reasons", got, want)
	}
	f := statFields(&s)
	for _, c := range []struct {
		field *uint64
		stat  relayStat
	}{
		{&s.ToPeer, relayStatSTAT_TO_PEER},
		{&s.RedirectNeigh, relayStatSTAT_REDIRECT_NEIGH},
		{&s.PassNotUDP, relayStatSTAT_PASS_NOT_UDP},
		{&s.PassChecksumPartial, relayStatSTAT_PASS_CSUM_PARTIAL},
		{&s.DropError, relayStatSTAT_DROP_ERROR},
	} {
		if f[c.stat] != c.field {
			t.Errorf("statFields[%d] is not the field for stat %d", c.stat, c.stat)
		}
	}
}
