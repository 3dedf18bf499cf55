package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// tools are the paths of the programs the harness drives.
type tools struct {
	Nginx, HAProxy, Wrk string
}

// debPackages maps each tool to the Debian package that ships it.
var debPackages = []struct{ bin, pkg string }{{"nginx", "nginx"}, {"haproxy", "haproxy"}, {"wrk", "wrk"}}

// ensureTools finds nginx, haproxy and wrk, installing the missing ones
// from Debian's packages (apt-get update once, then install) when running
// as root.
func ensureTools(ctx context.Context, logf func(string, ...any)) (tools, error) {
	var missing []string
	for _, d := range debPackages {
		if _, err := lookPath(d.bin); err != nil {
			missing = append(missing, d.pkg)
		}
	}
	if len(missing) > 0 {
		if os.Geteuid() != 0 {
			return tools{}, fmt.Errorf("missing %s; install with: sudo apt-get install -y %s", strings.Join(missing, ", "), strings.Join(missing, " "))
		}
		logf("installing %s with apt-get", strings.Join(missing, " "))
		for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq"}, missing...)} {
			cmd := exec.CommandContext(ctx, "apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				return tools{}, fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
	var t tools
	var err error
	if t.Nginx, err = lookPath("nginx"); err != nil {
		return t, err
	}
	if t.HAProxy, err = lookPath("haproxy"); err != nil {
		return t, err
	}
	if t.Wrk, err = lookPath("wrk"); err != nil {
		return t, err
	}
	return t, nil
}

// machine describes where the run happened.
type machine struct {
	NProc   int
	CPU     string
	MemGiB  float64
	Kernel  string
	LoadAvg string // at start: other work on a shared machine shows here
}

func describeMachine() machine {
	m := machine{NProc: runtime.NumCPU(), CPU: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if kb, err := parseStatusKB(string(b), "MemTotal"); err == nil {
			m.MemGiB = float64(kb) / (1 << 20)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel(cpuinfo string) string {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// versionOf runs argv and returns its first non-empty output line; many of
// these tools print their version to stderr, and wrk -v exits non-zero.
func versionOf(ctx context.Context, argv ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			// wrk -v prints "wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer".
			line, _, _ = strings.Cut(line, " Copyright")
			return line
		}
	}
	if err != nil {
		return fmt.Sprintf("unknown (%v)", err)
	}
	return "unknown"
}
