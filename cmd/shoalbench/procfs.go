package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat. The kernel
// fixes it at 100 for that interface on every architecture Go runs on here,
// so it is a constant rather than a sysconf call (which would need cgo).
const clockTicks = 100

// procStat is the part of /proc/PID/stat the harness reads.
type procStat struct {
	PID, PPID int
	Comm      string
	// Ticks is utime+stime+cutime+cstime: the CPU the process used plus that
	// of its children it has already waited for, so a tree's sum counts a
	// reaped worker once and a live one once.
	Ticks int64
}

// parseStat parses one /proc/PID/stat line. The command name sits in
// parentheses and may hold spaces or ')' itself, so fields are counted from
// the last ')'.
func parseStat(line string) (procStat, error) {
	var s procStat
	open := strings.IndexByte(line, '(')
	end := strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return s, fmt.Errorf("proc stat %q: no (comm) field", trunc(line))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return s, fmt.Errorf("proc stat %q: pid: %w", trunc(line), err)
	}
	s.PID, s.Comm = pid, line[open+1:end]
	// After ')': state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(line[end+1:])
	if len(f) < 15 {
		return s, fmt.Errorf("proc stat %q: %d fields after comm, want at least 15", trunc(line), len(f))
	}
	if s.PPID, err = strconv.Atoi(f[1]); err != nil {
		return s, fmt.Errorf("proc stat %q: ppid: %w", trunc(line), err)
	}
	for _, v := range f[11:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("proc stat %q: cpu times: %w", trunc(line), err)
		}
		s.Ticks += n
	}
	return s, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// parseStatusKB returns the value, in KiB, of a "Key:   1234 kB" line of
// /proc/PID/status, such as VmRSS or VmHWM.
func parseStatusKB(status, key string) (int64, error) {
	v, err := statusField(status, key)
	if err != nil {
		return 0, err
	}
	num, ok := strings.CutSuffix(v, " kB")
	if !ok {
		return 0, fmt.Errorf("proc status %s: %q is not in kB", key, v)
	}
	return strconv.ParseInt(strings.TrimSpace(num), 10, 64)
}

// parseStatusInt returns a plain number field of /proc/PID/status (Threads).
func parseStatusInt(status, key string) (int64, error) {
	v, err := statusField(status, key)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

func statusField(status, key string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == key {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("proc status: no %s line", key)
}

// descendants returns root and every process below it, given all processes'
// parents. Order: root first, then breadth first.
func descendants(root int, stats []procStat) []int {
	kids := make(map[int][]int)
	for _, s := range stats {
		kids[s.PPID] = append(kids[s.PPID], s.PID)
	}
	out := []int{root}
	seen := map[int]bool{root: true}
	for i := 0; i < len(out); i++ {
		for _, k := range kids[out[i]] {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// readAllStats reads /proc/*/stat; processes that vanish meanwhile are skipped.
func readAllStats() []procStat {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := make([]procStat, 0, len(dirs))
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if s, err := parseStat(strings.TrimSpace(string(b))); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// processTree is the PIDs of root's tree right now (nginx: master and workers).
func processTree(root int) []int { return descendants(root, readAllStats()) }

// treeCPU is the CPU time used so far by root's tree.
func treeCPU(root int) (time.Duration, error) {
	stats := readAllStats()
	byPID := make(map[int]procStat, len(stats))
	for _, s := range stats {
		byPID[s.PID] = s
	}
	if _, ok := byPID[root]; !ok {
		return 0, fmt.Errorf("process %d is gone", root)
	}
	var ticks int64
	for _, pid := range descendants(root, stats) {
		ticks += byPID[pid].Ticks
	}
	return ticksToDuration(ticks), nil
}

func ticksToDuration(t int64) time.Duration { return time.Duration(t) * time.Second / clockTicks }

// treeRSS sums VmRSS, in KiB, over pids; vanished ones count 0.
func treeRSS(pids []int) int64 {
	var kb int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		if v, err := parseStatusKB(string(b), "VmRSS"); err == nil {
			kb += v
		}
	}
	return kb
}

// threads is the Threads line of /proc/PID/status.
func threads(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusInt(string(b), "Threads")
}
