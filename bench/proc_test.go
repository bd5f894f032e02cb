package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want time.Duration
		ok   bool
	}{
		{
			"plain",
			"1234 (turnserver) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 1000000 2000",
			3 * time.Second, true,
		},
		{
			"command with spaces and parentheses",
			"77 (a) b) (c) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 5 100 10",
			100 * time.Millisecond, true,
		},
		{"no command", "1234 turnserver S 1", 0, false},
		{"too short", "1234 (x) S 1 2 3", 0, false},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 ab 3 0", 0, false},
	}
	for _, tt := range tests {
		got, err := parseStatCPU([]byte(tt.stat))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: parseStatCPU = %v, %v; want %v, ok=%v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	tests := []struct {
		name   string
		status string
		want   uint64
		ok     bool
	}{
		{"typical", "Name:\tferry\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads:\t8\n", 12345, true},
		{"missing", "Name:\tkthreadd\nState:\tS\n", 0, false},
		{"bad unit", "VmRSS:\t 5 MB\n", 0, false},
	}
	for _, tt := range tests {
		got, err := parseStatusRSS([]byte(tt.status))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: parseStatusRSS = %v, %v; want %v, ok=%v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.rssKB == 0 {
		t.Fatal("VmRSS 0 for this process")
	}
	if _, err := readProc(0); err == nil {
		t.Fatal("readProc(0) succeeded")
	}
}

func TestReadCgroupCPU(t *testing.T) {
	v2 := t.TempDir()
	if err := os.WriteFile(filepath.Join(v2, "cpu.stat"), []byte("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnice_usec 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err := readCgroupCPU(v2); err != nil || d != 1234567*time.Microsecond {
		t.Errorf("v2 cpu.stat: %v, %v", d, err)
	}
	v1 := t.TempDir()
	if err := os.WriteFile(filepath.Join(v1, "cpuacct.usage"), []byte("987654321\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, err := readCgroupCPU(v1); err != nil || d != 987654321 {
		t.Errorf("v1 cpuacct.usage: %v, %v", d, err)
	}
	if _, err := readCgroupCPU(t.TempDir()); err == nil {
		t.Error("a directory without cpu files: no error")
	}
	if _, err := parseCPUStatUsage([]byte("user_usec 5\n")); err == nil {
		t.Error("cpu.stat without usage_usec: no error")
	}
}

func TestInCgroup(t *testing.T) {
	self := []byte("9:name=systemd:/\n4:memory:/other/1\n2:cpuacct:/\n0::/ferry-bench-7/ferry\n")
	tests := []struct {
		dir  string
		want bool
	}{
		{"/sys/fs/cgroup/unified/ferry-bench-7/ferry", true},
		{"/sys/fs/cgroup/unified/ferry-bench-7/ferry/", true},
		{"/sys/fs/cgroup/unified/ferry-bench-7/4.6.1", false},
		{"/sys/fs/cgroup/unified", false},
	}
	for _, tt := range tests {
		if got := inCgroup(self, tt.dir); got != tt.want {
			t.Errorf("inCgroup(%q) = %v, want %v", tt.dir, got, tt.want)
		}
	}
}

func TestSoftirqThreads(t *testing.T) {
	pids := softirqThreads()
	if len(pids) == 0 {
		t.Skip("no ksoftirqd threads visible (a container without the host's /proc?)")
	}
	_ = readSoftirqCPU(pids) // readable; its value may well be 0
}

func TestRaiseNofile(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &lim) }()
	if err := raiseNofile(lim.Cur); err != nil {
		t.Fatalf("at the current limit: %v", err)
	}
	if lim.Max == unix.RLIM_INFINITY {
		t.Skip("no hard limit")
	}
	err := raiseNofile(lim.Max + 1)
	var now unix.Rlimit
	if gerr := unix.Getrlimit(unix.RLIMIT_NOFILE, &now); gerr != nil {
		t.Fatal(gerr)
	}
	switch {
	case err == nil && now.Cur < lim.Max+1:
		t.Fatalf("raised to %d, want >= %d", now.Cur, lim.Max+1)
	case err != nil && !strings.Contains(err.Error(), "ulimit -n"):
		t.Fatalf("error %q does not say what to do", err)
	}
	t.Logf("past the hard limit %d: %v", lim.Max, err)
}

func TestParseProcStat(t *testing.T) {
	c, err := parseProcStat([]byte("cpu  100 5 50 1000 7 3 2 11 0 0\ncpu0 50 2 25 500 3 1 1 5 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.busy != 1600*time.Millisecond || c.steal != 110*time.Millisecond {
		t.Fatalf("busy %v steal %v, want 1.6s and 110ms", c.busy, c.steal)
	}
	if _, err := parseProcStat([]byte("intr 1 2 3\n")); err == nil {
		t.Fatal("no cpu line: no error")
	}
	if _, err := readMachineCPU(); err != nil {
		t.Fatal(err)
	}
}
