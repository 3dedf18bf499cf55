package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// benchCase is one cell of the matrix: a body size at a connection count.
type benchCase struct {
	Body  string // label: "13 B" or "16 KiB"
	Path  string
	Conns int
}

func (c benchCase) String() string { return fmt.Sprintf("%s body, %d connections", c.Body, c.Conns) }

func benchCases(conns []int) []benchCase {
	var cs []benchCase
	for _, b := range []struct{ label, path string }{
		{fmt.Sprintf("%d B", len(smallBody)), smallPath},
		{fmt.Sprintf("%d KiB", len(largeBody)>>10), largePath},
	} {
		for _, c := range conns {
			cs = append(cs, benchCase{Body: b.label, Path: b.path, Conns: c})
		}
	}
	return cs
}

// sample is what one wrk run against one target measured. Figures that do
// not apply (proxy CPU for direct) are NaN.
type sample struct {
	RPS      float64
	P50, P99 float64 // milliseconds
	CPU10k   float64 // proxy CPU seconds per 10,000 requests
	RSSMiB   float64 // peak summed VmRSS of the proxy's process tree
	Requests int64
	Errors   int64
}

// runOpts are the knobs of a wrk run.
type runOpts struct {
	Threads  int
	Duration time.Duration
}

// measure drives t with one wrk run and samples the proxy's process tree
// around it: CPU before and after, RSS every 100 ms during.
func measure(ctx context.Context, t *target, c benchCase, o runOpts) (sample, []string, error) {
	s := sample{CPU10k: math.NaN(), RSSMiB: math.NaN()}
	args := wrkArgs(o.Threads, c.Conns, o.Duration, "http://"+t.Addr+c.Path)
	var cpu0 time.Duration
	var peakKB int64
	stopRSS := func() {}
	if t.Proc != nil {
		pid := t.Proc.PID()
		var err error
		if cpu0, err = treeCPU(pid); err != nil {
			return s, args, fmt.Errorf("%s: %w", t.Name, err)
		}
		pids := processTree(pid)
		peakKB = treeRSS(pids)
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					peakKB = max(peakKB, treeRSS(pids))
				}
			}
		}()
		stopRSS = func() { close(done); wg.Wait() }
	}
	r, _, err := runWrk(ctx, args)
	stopRSS()
	if err != nil {
		return s, args, fmt.Errorf("%s, %s: %w", t.Name, c, err)
	}
	s.RPS, s.Requests, s.Errors = r.RPS, r.Requests, r.Errors()
	s.P50 = float64(r.P50) / float64(time.Millisecond)
	s.P99 = float64(r.P99) / float64(time.Millisecond)
	if t.Proc != nil {
		if ok, werr := t.Proc.exited(); ok {
			return s, args, fmt.Errorf("%s exited during the run (%v); its output:\n%s", t.Name, werr, t.Proc.log)
		}
		cpu1, err := treeCPU(t.Proc.PID())
		if err != nil {
			return s, args, fmt.Errorf("%s: %w", t.Name, err)
		}
		s.CPU10k = perTenK((cpu1 - cpu0).Seconds(), r.Requests)
		s.RSSMiB = float64(peakKB) / 1024
	}
	return s, args, nil
}

// results holds every sample by case and target name, in round order.
type results map[benchCase]map[string][]sample

func (r results) add(c benchCase, name string, s sample) {
	if r[c] == nil {
		r[c] = make(map[string][]sample)
	}
	r[c][name] = append(r[c][name], s)
}

// runMatrix runs every case: a short unrecorded warm-up per target, then
// `rounds` rounds, each driving the targets in turn (A B C D A B C D), so
// that drift on a shared machine spreads over all of them.
func runMatrix(ctx context.Context, targets []*target, cases []benchCase, rounds int, warmup time.Duration, o runOpts, logf func(string, ...any)) (results, error) {
	res := make(results)
	for _, c := range cases {
		if warmup > 0 {
			for _, t := range targets {
				w := o
				w.Duration = warmup
				if _, _, err := measure(ctx, t, c, w); err != nil {
					return res, fmt.Errorf("warm-up: %w", err)
				}
			}
		}
		for r := 1; r <= rounds; r++ {
			for _, t := range targets {
				if err := ctx.Err(); err != nil {
					return res, err
				}
				s, _, err := measure(ctx, t, c, o)
				if err != nil {
					return res, err
				}
				res.add(c, t.Name, s)
				logf("%s, round %d/%d, %-7s %9.0f req/s  p50 %6.2f ms  p99 %7.2f ms  cpu %s s/10k  rss %s MiB  errors %d",
					c, r, rounds, t.Name, s.RPS, s.P50, s.P99, fmtNum(s.CPU10k, 3), fmtNum(s.RSSMiB, 1), s.Errors)
				// A short pause lets the last run's sockets and CPU settle.
				select {
				case <-ctx.Done():
					return res, ctx.Err()
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}
	return res, nil
}

// summary is the medians of one target's rounds in one case.
type summary struct {
	RPS, P50, P99, CPU10k, RSSMiB float64
	Errors, Requests              int64
	Rounds                        int
}

func summarize(ss []sample) summary {
	var m summary
	pick := func(f func(sample) float64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		return median(v)
	}
	m.RPS = pick(func(s sample) float64 { return s.RPS })
	m.P50 = pick(func(s sample) float64 { return s.P50 })
	m.P99 = pick(func(s sample) float64 { return s.P99 })
	m.CPU10k = pick(func(s sample) float64 { return s.CPU10k })
	m.RSSMiB = pick(func(s sample) float64 { return s.RSSMiB })
	for _, s := range ss {
		m.Errors += s.Errors
		m.Requests += s.Requests
	}
	m.Rounds = len(ss)
	return m
}
