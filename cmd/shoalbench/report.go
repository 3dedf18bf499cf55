package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// soakMarker starts the soak section of the document. A matrix run keeps
// everything from it to the end; a soak run replaces it.
const soakMarker = "<!-- shoalbench:soak -->"

// report is everything a matrix run writes to docs/benchmarks.md.
type report struct {
	Started  time.Time
	Command  string // how the harness was run
	Machine  machine
	Versions [][2]string // name, version
	Rounds   int
	Duration time.Duration
	Warmup   time.Duration
	Threads  int // wrk threads
	Workers  int // proxy workers/threads/GOMAXPROCS
	Backends []string
	Backend  string // how one backend was started
	Targets  []*target
	Cases    []benchCase
	Res      results
	TmpDir   string // the run's temp dir, shown as $DIR
	LoadEnd  string // load average when the runs ended
}

// headlineCase is the case whose latency, CPU and memory the headline shows:
// the small body at the most connections.
func (r *report) headlineCase() benchCase {
	h := r.Cases[0]
	for _, c := range r.Cases {
		if c.Path == smallPath && c.Conns > h.Conns {
			h = c
		}
	}
	return h
}

func (r *report) summaries(c benchCase) (map[string]summary, summary, bool) {
	out := make(map[string]summary)
	for _, t := range r.Targets {
		out[t.Name] = summarize(r.Res[c][t.Name])
	}
	ref, ok := out[nameNginx]
	return out, ref, ok
}

// nanSummary is the reference when NGINX did not run: every ratio is a dash.
var nanSummary = summary{RPS: math.NaN(), P50: math.NaN(), P99: math.NaN(), CPU10k: math.NaN(), RSSMiB: math.NaN()}

// headline is the table for the README: req/s in every case, and latency,
// CPU and memory in the headline case, each with its ratio to NGINX.
func (r *report) headline() string {
	var b strings.Builder
	hc := r.headlineCase()
	b.WriteString("| Target |")
	for _, c := range r.Cases {
		fmt.Fprintf(&b, " req/s, %s × %d conns |", c.Body, c.Conns)
	}
	fmt.Fprintf(&b, " p99, %[1]s × %[2]d | CPU s / 10k req, %[1]s × %[2]d | peak RSS, %[1]s × %[2]d |\n", hc.Body, hc.Conns)
	b.WriteString("|---|" + strings.Repeat("---:|", len(r.Cases)+3) + "\n")
	for _, t := range r.Targets {
		fmt.Fprintf(&b, "| %s |", t.Name)
		for _, c := range r.Cases {
			sums, ref, ok := r.summaries(c)
			if !ok {
				ref = nanSummary
			}
			fmt.Fprintf(&b, " %s |", withRatio(fmtThousands(sums[t.Name].RPS), sums[t.Name].RPS, ref.RPS))
		}
		sums, ref, ok := r.summaries(hc)
		if !ok {
			ref = nanSummary
		}
		s := sums[t.Name]
		fmt.Fprintf(&b, " %s | %s | %s |\n",
			withRatio(fmtMs(s.P99), s.P99, ref.P99),
			withRatio(fmtNum(s.CPU10k, 3), s.CPU10k, ref.CPU10k),
			withRatio(fmtMiB(s.RSSMiB), s.RSSMiB, ref.RSSMiB))
	}
	return b.String()
}

// caseTable is the full table of one case.
func (r *report) caseTable(c benchCase) string {
	var b strings.Builder
	sums, ref, ok := r.summaries(c)
	if !ok {
		ref = nanSummary
	}
	b.WriteString("| Target | req/s | p50 | p99 | CPU s / 10k req | peak RSS | non-2xx + socket errors |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range r.Targets {
		s := sums[t.Name]
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d of %s |\n", t.Name,
			withRatio(fmtThousands(s.RPS), s.RPS, ref.RPS),
			withRatio(fmtMs(s.P50), s.P50, ref.P50),
			withRatio(fmtMs(s.P99), s.P99, ref.P99),
			withRatio(fmtNum(s.CPU10k, 3), s.CPU10k, ref.CPU10k),
			withRatio(fmtMiB(s.RSSMiB), s.RSSMiB, ref.RSSMiB),
			s.Errors, fmtThousands(float64(s.Requests)))
	}
	return b.String()
}

// roundsTable lists every round's req/s, so the spread behind a median shows.
func (r *report) roundsTable() string {
	var b strings.Builder
	b.WriteString("| Case | Target |")
	for i := 1; i <= r.Rounds; i++ {
		fmt.Fprintf(&b, " round %d |", i)
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---:|", r.Rounds) + "\n")
	for _, c := range r.Cases {
		for _, t := range r.Targets {
			fmt.Fprintf(&b, "| %s × %d | %s |", c.Body, c.Conns, t.Name)
			for _, s := range r.Res[c][t.Name] {
				fmt.Fprintf(&b, " %s req/s, p99 %s |", fmtThousands(s.RPS), fmtMs(s.P99))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// document renders docs/benchmarks.md; soak is a previous soak section to
// keep (from soakMarker on), or "".
func (r *report) document(soak string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Benchmarks\n\n")
	w("Written by the benchmark harness (`cmd/shoalbench`) on %s; do not edit by hand: run `make bench` again.\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"))
	w("Shoal, NGINX and HAProxy, each in front of the same %d backends, and the backend alone (\"direct\"), on one machine in one run. ", len(r.Backends))
	w("Every figure is the median of %s; the figure in parentheses is its ratio to NGINX's median in the same run ", plural(r.Rounds, "round"))
	w("(for req/s higher is better; for latency, CPU and memory lower is better).\n\n")
	w("## Headline\n\n%s\n", r.headline())
	w("## Machine\n\n")
	w("- CPUs: %d × %s\n- Memory: %.1f GiB\n- Kernel: Linux %s\n- Load average (1, 5, 15 min) when the run started: %s; when the runs ended: %s\n\n", r.Machine.NProc, r.Machine.CPU, r.Machine.MemGiB, r.Machine.Kernel, r.Machine.LoadAvg, r.LoadEnd)
	w("Everything shares these CPUs: wrk (%d threads), the %d backends and the proxy (%d workers), so each proxy competes with its own load generator and backends for CPU. ", r.Threads, len(r.Backends), r.Workers)
	w("Absolute numbers are lower than on a dedicated machine; compare the ratios.\n\n")
	if busy(r.Machine.LoadAvg, r.Machine.NProc) || busy(r.LoadEnd, r.Machine.NProc) {
		w("**The machine was also busy with other work during this run** (see the load averages above, which include the harness's own load only at the end). ")
		w("Rounds vary more than they would on a quiet machine: check the spread in \"Every round\" before reading much into a difference of a few tens of percent.\n\n")
	}
	w("## Versions\n\n")
	for _, v := range r.Versions {
		w("- %s: `%s`\n", v[0], v[1])
	}
	w("\n## Method\n\n")
	w("- Cases: a %d-byte body and a %d KiB body, each at", len(smallBody), len(largeBody)>>10)
	for i, c := range r.Cases {
		if c.Path != smallPath {
			break
		}
		if i > 0 {
			w(" and")
		}
		w(" %d", c.Conns)
	}
	w(" connections.\n")
	w("- Each case: a %s warm-up per target (not recorded), then %s of %s per target, interleaved (%s, %s, ...), with a 0.5 s pause between runs.\n",
		r.Warmup, plural(r.Rounds, "round"), r.Duration, targetOrder(r.Targets), targetOrder(r.Targets))
	w("- req/s, p50 and p99 are wrk's (`--latency`). wrk keeps its connections open, so this measures keep-alive request throughput.\n")
	w("- CPU is utime+stime (+cutime+cstime) from `/proc/PID/stat`, summed over the proxy's process tree (NGINX's master and workers), read before and after each run, divided by the requests wrk completed. It includes the connection set-up of each run. \"direct\" has no proxy, so no proxy CPU or memory.\n")
	w("- Peak RSS is the largest sum of `VmRSS` over the proxy's process tree, sampled every 100 ms during a run.\n")
	w("- Each proxy runs with %d workers: NGINX `worker_processes %d`, HAProxy `nbthread %d`, Shoal `GOMAXPROCS=%d`. Keep-alive to the backends, round robin, no access log on any of them.\n", r.Workers, r.Workers, r.Workers, r.Workers)
	w("- Before the runs, each target is checked to return both bodies whole with status 200; the last column counts any error wrk saw.\n\n")
	w("## Results\n\n")
	for _, c := range r.Cases {
		w("### %s\n\n%s\n", c, r.caseTable(c))
	}
	w("### Every round\n\n%s\n", r.roundsTable())
	w("## Commands\n\n")
	w("The harness:\n\n```\n%s\n```\n\n", r.Command)
	w("Each backend (a minimal net/http server inside the harness binary; `GOMAXPROCS` unset):\n\n```\n%s\n```\n\n", r.Backend)
	var wrkLines []string
	for _, p := range []string{smallPath, largePath} {
		l := "wrk " + strings.Join(wrkArgs(r.Threads, 0, r.Duration, "http://ADDR"+p), " ")
		wrkLines = append(wrkLines, strings.Replace(l, "-c0", "-cCONNS", 1))
	}
	w("wrk, per run (ADDR is the target's address, CONNS the case's connections; warm-ups the same with `-d%s`):\n\n```\n%s\n```\n\n",
		wrkSeconds(r.Warmup), strings.Join(wrkLines, "\n"))
	w("$DIR below is the run's temporary directory, removed at the end.\n\n")
	for _, t := range r.Targets {
		if t.Proc == nil {
			w("%s: wrk against %s, the first backend.\n\n", t.Name, t.Addr)
			continue
		}
		w("%s:\n\n```\n%s\n```\n\n", t.Name, commandLine(t.Env, t.Argv))
		if t.Cfg != "" {
			lang := ""
			if strings.HasSuffix(t.CfgName, ".yaml") {
				lang = "yaml"
			}
			w("<details><summary>%s</summary>\n\n```%s\n%s```\n\n</details>\n\n", t.CfgName, lang, t.Cfg)
		}
	}
	doc := b.String()
	if r.TmpDir != "" {
		doc = strings.ReplaceAll(doc, r.TmpDir, "$DIR")
	}
	if soak != "" {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + soak
	}
	return doc
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func targetOrder(ts []*target) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}

// splitSoak returns a document without its soak section, and the section.
func splitSoak(doc string) (main, soak string) {
	if i := strings.Index(doc, soakMarker); i >= 0 {
		return doc[:i], doc[i:]
	}
	return doc, ""
}

func withRatio(s string, x, ref float64) string {
	q := ratio(x, ref)
	if math.IsNaN(q) || math.IsNaN(x) {
		return s
	}
	return fmt.Sprintf("%s (%s×)", s, strconv.FormatFloat(q, 'f', 2, 64))
}

func fmtNum(x float64, prec int) string {
	if math.IsNaN(x) {
		return "—"
	}
	return strconv.FormatFloat(x, 'f', prec, 64)
}

func fmtMs(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmtNum(x, 2) + " ms"
}

func fmtMiB(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmtNum(x, 1) + " MiB"
}

// fmtThousands rounds x and groups its digits: 41234.6 -> "41,235".
func fmtThousands(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	s := strconv.FormatInt(int64(math.Round(x)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// busy reports whether a "1 5 15" load average string shows the 1-minute
// load above the CPU count.
func busy(loadavg string, nproc int) bool {
	f := strings.Fields(loadavg)
	if len(f) == 0 {
		return false
	}
	l, err := strconv.ParseFloat(f[0], 64)
	return err == nil && l > float64(nproc)
}
