package bench

import (
	"os"
	"testing"
	"time"
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
