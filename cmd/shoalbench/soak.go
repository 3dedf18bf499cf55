package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// soakPoint is one sample of Shoal during the soak.
type soakPoint struct {
	At         time.Duration // since the load started
	RSSMiB     float64
	Goroutines int64
	CPU        time.Duration // cumulative, since the load started
}

// goroutineSource names where goroutine counts come from.
type goroutineSource int

const (
	fromExpvar  goroutineSource = iota // GET /debug/vars on the admin address
	fromPprof                          // GET /debug/pprof/goroutine?debug=1
	fromMetrics                        // go_goroutines in GET /metrics (Prometheus)
	fromThreads                        // /proc/PID/status Threads: OS threads, a stand-in
)

func (s goroutineSource) String() string {
	switch s {
	case fromExpvar:
		return "goroutines from `GET /debug/vars` on the admin address"
	case fromPprof:
		return "goroutines from `GET /debug/pprof/goroutine?debug=1` on the admin address"
	case fromMetrics:
		return "goroutines from `go_goroutines` in `GET /metrics` on the admin address (the admin address serves no `/debug/vars` with a goroutine count)"
	default:
		return "OS threads from `/proc/PID/status` (`Threads:`), standing in for goroutines because the admin address serves none of `/debug/vars` with a goroutine count, `/debug/pprof/goroutine` or `go_goroutines` in `/metrics`"
	}
}

// expvarGoroutines finds a goroutine count in an expvar JSON document: a
// numeric key named goroutines, num_goroutine, NumGoroutine or
// go_goroutines, at any depth.
func expvarGoroutines(body []byte) (int64, bool) {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, false
	}
	return findGoroutines(v)
}

func findGoroutines(v any) (int64, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return 0, false
	}
	for k, x := range m {
		switch strings.ToLower(k) {
		case "goroutines", "num_goroutine", "numgoroutine", "go_goroutines":
			if f, ok := x.(float64); ok {
				return int64(f), true
			}
		}
	}
	for _, x := range m {
		if n, ok := findGoroutines(x); ok {
			return n, true
		}
	}
	return 0, false
}

// pprofGoroutines reads "goroutine profile: total N" from the first line of
// /debug/pprof/goroutine?debug=1.
func pprofGoroutines(body []byte) (int64, bool) {
	line, _, _ := strings.Cut(string(body), "\n")
	num, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	return n, err == nil
}

// promGoroutines reads the "go_goroutines N" sample of a Prometheus text
// exposition.
func promGoroutines(body []byte) (int64, bool) {
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "go_goroutines" || strings.HasPrefix(f[0], "go_goroutines{")) {
			v, err := strconv.ParseFloat(f[1], 64)
			return int64(v), err == nil
		}
	}
	return 0, false
}

// goroutineProbe returns a function that counts Shoal's goroutines, from
// the best source that answers.
func goroutineProbe(ctx context.Context, admin string, pid int) (func() (int64, error), goroutineSource) {
	get := func(path string) ([]byte, bool) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
		resp, err := probeClient.Do(req)
		if err != nil {
			return nil, false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return b, err == nil && resp.StatusCode == http.StatusOK
	}
	for _, c := range []struct {
		src   goroutineSource
		path  string
		parse func([]byte) (int64, bool)
	}{
		{fromExpvar, "/debug/vars", expvarGoroutines},
		{fromPprof, "/debug/pprof/goroutine?debug=1", pprofGoroutines},
		{fromMetrics, "/metrics", promGoroutines},
	} {
		if b, ok := get(c.path); ok {
			if _, ok := c.parse(b); ok {
				return func() (int64, error) {
					b, ok := get(c.path)
					if !ok {
						return 0, fmt.Errorf("GET %s on %s failed", c.path, admin)
					}
					n, ok := c.parse(b)
					if !ok {
						return 0, fmt.Errorf("GET %s on %s: no goroutine count in the answer", c.path, admin)
					}
					return n, nil
				}, c.src
			}
		}
	}
	return func() (int64, error) { return threads(pid) }, fromThreads
}

// slopePerMinute is the least-squares slope of ys over xs (minutes).
func slopePerMinute(xs []time.Duration, ys []float64) float64 {
	n := float64(len(xs))
	if len(xs) < 2 || len(xs) != len(ys) {
		return math.NaN()
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		x := xs[i].Minutes()
		sx += x
		sy += ys[i]
		sxx += x * x
		sxy += x * ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / d
}

// soakReport is what the soak measured.
type soakReport struct {
	Started          time.Time
	Command          string
	ShoalCmd         string
	Duration, Warmup time.Duration
	Interval         time.Duration
	Conns, Threads   int
	Source           goroutineSource
	Points           []soakPoint
	Wrk              wrkResult
	CPU              time.Duration
	HWMMiB           float64 // VmHWM at the end
	Version          string
	BackendsN        int
	WrkLine          string
	SampleErrs       []string
	Machine          machine
	TmpDir           string // shown as $DIR
}

// runSoak drives Shoal for o.Duration at conns connections and samples it
// every interval.
func runSoak(ctx context.Context, t *target, conns int, o runOpts, interval time.Duration, logf func(string, ...any)) (soakReport, error) {
	sr := soakReport{Duration: o.Duration, Interval: interval, Conns: conns, Threads: o.Threads}
	pid := t.Proc.PID()
	count, src := goroutineProbe(ctx, t.Admin, pid)
	sr.Source = src
	logf("soak: sampling %s every %s", src, interval)
	args := wrkArgs(o.Threads, conns, o.Duration, "http://"+t.Addr+smallPath)
	sr.WrkLine = "wrk " + strings.Join(args, " ")
	cpu0, err := treeCPU(pid)
	if err != nil {
		return sr, err
	}
	type wrkDone struct {
		r   wrkResult
		err error
	}
	done := make(chan wrkDone, 1)
	wctx, cancel := context.WithTimeout(ctx, o.Duration+2*time.Minute)
	defer cancel()
	start := time.Now()
	go func() {
		r, _, err := runWrk(wctx, args)
		done <- wrkDone{r, err}
	}()
	sample := func() {
		p := soakPoint{At: time.Since(start).Round(time.Second)}
		p.RSSMiB = float64(treeRSS(processTree(pid))) / 1024
		if c, err := treeCPU(pid); err == nil {
			p.CPU = c - cpu0
		}
		n, err := count()
		if err != nil {
			sr.SampleErrs = append(sr.SampleErrs, fmt.Sprintf("%s: %v", p.At, err))
			n = -1
		}
		p.Goroutines = n
		sr.Points = append(sr.Points, p)
		logf("soak: %6s  rss %6.1f MiB  %s %d", p.At, p.RSSMiB, map[bool]string{true: "threads", false: "goroutines"}[src == fromThreads], p.Goroutines)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return sr, ctx.Err()
		case d := <-done:
			if d.err != nil {
				return sr, d.err
			}
			if n := len(sr.Points); n == 0 || time.Since(start)-sr.Points[n-1].At > time.Second {
				sample()
			}
			sr.Wrk = d.r
			cpu1, err := treeCPU(pid)
			if err != nil {
				return sr, err
			}
			sr.CPU = cpu1 - cpu0
			if b, err := readStatus(pid); err == nil {
				if kb, err := parseStatusKB(b, "VmHWM"); err == nil {
					sr.HWMMiB = float64(kb) / 1024
				}
			}
			return sr, nil
		case <-tick.C:
			if ok, werr := t.Proc.exited(); ok {
				cancel()
				<-done
				return sr, fmt.Errorf("Shoal exited during the soak (%v); its output:\n%s", werr, t.Proc.log)
			}
			sample()
		}
	}
}

// soakGrowth compares the first sample at or after the warm-up with the
// last one, and fits a slope through the post-warm-up samples.
type soakGrowth struct {
	From, To                 soakPoint
	RSSDelta, RSSPct         float64
	GoroutineDelta           int64
	RSSSlope, GoroutineSlope float64 // per minute
	N                        int     // samples after the warm-up
	MaxRSS                   float64
	MaxGoroutines            int64
}

func growth(points []soakPoint, warmup time.Duration) (soakGrowth, bool) {
	var after []soakPoint
	for _, p := range points {
		if p.At >= warmup {
			after = append(after, p)
		}
	}
	if len(after) < 2 {
		return soakGrowth{}, false
	}
	g := soakGrowth{From: after[0], To: after[len(after)-1], N: len(after)}
	g.RSSDelta = g.To.RSSMiB - g.From.RSSMiB
	g.RSSPct = ratio(g.RSSDelta, g.From.RSSMiB) * 100
	g.GoroutineDelta = g.To.Goroutines - g.From.Goroutines
	xs := make([]time.Duration, len(after))
	rss := make([]float64, len(after))
	gr := make([]float64, len(after))
	for i, p := range after {
		xs[i], rss[i], gr[i] = p.At, p.RSSMiB, float64(p.Goroutines)
		g.MaxRSS = max(g.MaxRSS, p.RSSMiB)
		g.MaxGoroutines = max(g.MaxGoroutines, p.Goroutines)
	}
	g.RSSSlope = slopePerMinute(xs, rss)
	g.GoroutineSlope = slopePerMinute(xs, gr)
	return g, true
}

// section renders the soak section of docs/benchmarks.md, starting with
// soakMarker.
func (sr soakReport) section() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	unit := "goroutines"
	if sr.Source == fromThreads {
		unit = "OS threads"
	}
	w("%s\n## Soak\n\n", soakMarker)
	w("Run on %s with `%s`: Shoal alone (%s) in front of %d backends, %s at %d connections on the %d-byte body, sampled every %s; growth is measured from the first sample at or after %s of warm-up to the last.\n\n",
		sr.Started.UTC().Format("2006-01-02 15:04 MST"), sr.Command, sr.Version, sr.BackendsN, sr.Duration, sr.Conns, len(smallBody), sr.Interval, sr.Warmup)
	w("- Machine: %d × %s, load average at start %s\n", sr.Machine.NProc, sr.Machine.CPU, sr.Machine.LoadAvg)
	w("- Shoal: `%s`\n- Load: `%s`\n- Memory: summed `VmRSS` of Shoal's process tree from `/proc`; %s.\n\n", sr.ShoalCmd, sr.WrkLine, sr.Source)
	w("### Final figures\n\n")
	w("| req/s | p50 | p99 | requests | non-2xx + socket errors | CPU s / 10k req | VmHWM at the end |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	w("| %s | %s | %s | %s | %d | %s | %s |\n\n", fmtThousands(sr.Wrk.RPS), fmtMs(float64(sr.Wrk.P50)/1e6), fmtMs(float64(sr.Wrk.P99)/1e6),
		fmtThousands(float64(sr.Wrk.Requests)), sr.Wrk.Errors(), fmtNum(perTenK(sr.CPU.Seconds(), sr.Wrk.Requests), 3), fmtMiB(sr.HWMMiB))
	w("### Growth after the warm-up\n\n")
	if g, ok := growth(sr.Points, sr.Warmup); ok {
		w("| | at %s | at %s | change | fitted slope over %d samples | max after warm-up |\n|---|---:|---:|---:|---:|---:|\n", g.From.At, g.To.At, g.N)
		w("| RSS | %s | %s | %+.1f MiB (%+.1f%%) | %+.2f MiB/min | %s |\n", fmtMiB(g.From.RSSMiB), fmtMiB(g.To.RSSMiB), g.RSSDelta, g.RSSPct, g.RSSSlope, fmtMiB(g.MaxRSS))
		w("| %s | %d | %d | %+d | %+.2f /min | %d |\n\n", unit, g.From.Goroutines, g.To.Goroutines, g.GoroutineDelta, g.GoroutineSlope, g.MaxGoroutines)
	} else {
		w("Too few samples after the warm-up to measure growth.\n\n")
	}
	if len(sr.SampleErrs) > 0 {
		w("Samples that failed (shown as -1): %s\n\n", strings.Join(sr.SampleErrs, "; "))
	}
	w("<details><summary>Every sample</summary>\n\n| time | RSS | %s | Shoal CPU so far |\n|---:|---:|---:|---:|\n", unit)
	for _, p := range sr.Points {
		w("| %s | %s | %d | %.1f s |\n", p.At, fmtMiB(p.RSSMiB), p.Goroutines, p.CPU.Seconds())
	}
	w("\n</details>\n")
	if sr.TmpDir != "" {
		return strings.ReplaceAll(b.String(), sr.TmpDir, "$DIR")
	}
	return b.String()
}

// readStatus returns /proc/PID/status.
func readStatus(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	return string(b), err
}
