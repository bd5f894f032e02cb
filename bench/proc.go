package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture's user ABI (getconf CLK_TCK prints it;
// the kernel's internal HZ does not leak into /proc), so it is a constant
// here rather than a cgo sysconf call.
const clockTicks = 100

// procSample is one reading of a process's CPU time and resident memory.
type procSample struct {
	cpu   time.Duration // utime+stime, all threads
	rssKB uint64        // VmRSS
}

// readProc samples /proc/PID/stat and /proc/PID/status.
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("server pid %d: %w", pid, err)
	}
	s.cpu, err = parseStatCPU(stat)
	if err != nil {
		return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("server pid %d: %w", pid, err)
	}
	s.rssKB, err = parseStatusRSS(status)
	if err != nil {
		return s, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return s, nil
}

// parseStatCPU returns utime+stime from /proc/PID/stat. The command name
// (field 2) is in parentheses and may hold spaces, so fields are counted
// after the last ')': state is field 3, utime 14, stime 15.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' after the command name")
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want >= 13", len(f))
	}
	var ticks uint64
	for _, field := range f[11:13] { // utime, stime
		v, err := strconv.ParseUint(string(field), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("utime/stime: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatusRSS returns VmRSS in KiB from /proc/PID/status.
func parseStatusRSS(status []byte) (uint64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want '<n> kB'", bytes.TrimSpace(line))
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("no VmRSS line (a zombie or kernel thread?)")
}

// readCgroupCPU returns the CPU time of the processes in cgroup dir: v2's
// cpu.stat usage_usec (present whether or not the cpu controller is
// enabled), else v1's cpuacct.usage (ns).
func readCgroupCPU(dir string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err == nil {
		return parseCPUStatUsage(b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	b, err = os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: neither cpu.stat (v2) nor cpuacct.usage (v1): %w", dir, err)
	}
	ns, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: cpuacct.usage: %w", dir, err)
	}
	return time.Duration(ns), nil
}

// parseCPUStatUsage returns usage_usec from a cgroup v2 cpu.stat.
func parseCPUStatUsage(stat []byte) (time.Duration, error) {
	for line := range bytes.Lines(stat) {
		rest, ok := bytes.CutPrefix(line, []byte("usage_usec "))
		if !ok {
			continue
		}
		us, err := strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cpu.stat usage_usec: %w", err)
		}
		return time.Duration(us) * time.Microsecond, nil
	}
	return 0, errors.New("cpu.stat has no usage_usec line")
}

// inCgroup reports whether /proc/self/cgroup (its text in self) places this
// process in dir: some hierarchy's path is dir's tail. Best effort, for a
// warning only.
func inCgroup(self []byte, dir string) bool {
	dir = filepath.Clean(dir)
	for line := range bytes.Lines(self) {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(strings.TrimSpace(string(line)), ":", 3)
		if len(parts) != 3 || parts[2] == "/" {
			continue
		}
		if strings.HasSuffix(dir, parts[2]) {
			return true
		}
	}
	return false
}

// softirqThreads returns the pids of the kernel's ksoftirqd/N threads:
// softirq work (packet delivery) that the kernel defers to them is charged
// to no process of the benchmark.
func softirqThreads() []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	var pids []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || !bytes.HasPrefix(b, []byte("ksoftirqd/")) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(d))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// readSoftirqCPU sums the CPU time of the ksoftirqd threads.
func readSoftirqCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if d, err := parseStatCPU(b); err == nil {
			sum += d
		}
	}
	return sum
}

// cpuTimes is the machine's CPU time from the first line of /proc/stat:
// busy (user, nice, system, irq, softirq; guest time is inside user) and
// steal (taken by the hypervisor for other guests), summed over CPUs.
type cpuTimes struct {
	busy, steal time.Duration
}

// readMachineCPU reads /proc/stat.
func readMachineCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStat(b)
}

// parseProcStat parses the "cpu" line of /proc/stat (USER_HZ ticks).
func parseProcStat(stat []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: first line %q: want cpu and 8 or more counters", line)
	}
	var v [8]uint64 // user nice system idle iowait irq softirq steal
	for i := range v {
		n, err := strconv.ParseUint(string(f[i+1]), 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %w", err)
		}
		v[i] = n
	}
	tick := time.Second / clockTicks
	return cpuTimes{
		busy:  time.Duration(v[0]+v[1]+v[2]+v[5]+v[6]) * tick,
		steal: time.Duration(v[7]) * tick,
	}, nil
}

// sampler samples the server (if a pid is set), the generator itself and,
// with a cgroup, the cgroup and the ksoftirqd threads.
type sampler struct {
	pid      int
	cgroup   string
	softirqd []int
}

type samples struct {
	server, self procSample
	group        time.Duration // the cgroup's CPU time
	softirq      time.Duration // the ksoftirqd threads' CPU time
	machine      cpuTimes      // the whole machine's, with a cgroup
	at           time.Time
}

func (s sampler) sample() (samples, error) {
	out := samples{at: time.Now()}
	var err error
	if s.pid > 0 {
		if out.server, err = readProc(s.pid); err != nil {
			return out, err
		}
	}
	if s.cgroup != "" {
		if out.group, err = readCgroupCPU(s.cgroup); err != nil {
			return out, err
		}
		out.softirq = readSoftirqCPU(s.softirqd)
		if out.machine, err = readMachineCPU(); err != nil {
			return out, err
		}
	}
	out.self, err = readProc(os.Getpid())
	return out, err
}
