package main

import (
	"math"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		desc string
		in   []float64
		want float64
	}{
		{"odd count, unsorted", []float64{3, 1, 2}, 2},
		{"even count takes the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
		{"NaN rounds are left out", []float64{nan, 5, 1}, 3},
		{"none", nil, nan},
		{"all NaN", []float64{nan, nan}, nan},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got := median(tt.in)
			if !(got == tt.want || math.IsNaN(got) && math.IsNaN(tt.want)) {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 {
		t.Error("median reordered its input")
	}
}

func TestRatio(t *testing.T) {
	if got := ratio(30, 20); got != 1.5 {
		t.Errorf("ratio(30, 20) = %v, want 1.5", got)
	}
	for _, c := range [][2]float64{{1, 0}, {1, -1}, {math.NaN(), 1}, {1, math.NaN()}} {
		if got := ratio(c[0], c[1]); !math.IsNaN(got) {
			t.Errorf("ratio(%v, %v) = %v, want NaN", c[0], c[1], got)
		}
	}
}

func TestPerTenK(t *testing.T) {
	if got := perTenK(2.5, 50000); math.Abs(got-0.5) > 1e-12 {
		t.Errorf("perTenK(2.5 s, 50000) = %v, want 0.5", got)
	}
	if got := perTenK(1, 0); !math.IsNaN(got) {
		t.Errorf("perTenK with no requests = %v, want NaN", got)
	}
}

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	got := summarize([]sample{
		{RPS: 100, P50: 1, P99: 9, CPU10k: 0.3, RSSMiB: 20, Requests: 1000, Errors: 1},
		{RPS: 300, P50: 3, P99: 7, CPU10k: 0.1, RSSMiB: 22, Requests: 3000},
		{RPS: 200, P50: 2, P99: 8, CPU10k: 0.2, RSSMiB: 21, Requests: 2000, Errors: 2},
	})
	want := summary{RPS: 200, P50: 2, P99: 8, CPU10k: 0.2, RSSMiB: 21, Requests: 6000, Errors: 3, Rounds: 3}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	direct := summarize([]sample{{RPS: 1, CPU10k: nan, RSSMiB: nan}})
	if !math.IsNaN(direct.CPU10k) || !math.IsNaN(direct.RSSMiB) {
		t.Errorf("summarize kept NaN as a number: %+v", direct)
	}
}

func TestSlopeAndGrowth(t *testing.T) {
	var pts []soakPoint
	for i := 0; i <= 10; i++ { // every 10 s for 100 s; +1 MiB and +6 goroutines a minute after 60 s
		at := time.Duration(i) * 10 * time.Second
		p := soakPoint{At: at, RSSMiB: 50, Goroutines: 100}
		if at >= time.Minute {
			p.RSSMiB += (at - time.Minute).Minutes()
			p.Goroutines += int64((at - time.Minute).Seconds() / 10)
		}
		if i == 0 {
			p.RSSMiB = 10 // start-up, before the warm-up ends: ignored
		}
		pts = append(pts, p)
	}
	g, ok := growth(pts, time.Minute)
	if !ok {
		t.Fatal("growth: not enough samples")
	}
	if g.N != 5 || g.From.At != time.Minute || g.To.At != 100*time.Second {
		t.Errorf("growth window = %d samples from %v to %v; want 5 from 1m0s to 1m40s", g.N, g.From.At, g.To.At)
	}
	if math.Abs(g.RSSSlope-1) > 1e-9 || math.Abs(g.GoroutineSlope-6) > 1e-9 {
		t.Errorf("slopes = %v MiB/min, %v goroutines/min; want 1 and 6", g.RSSSlope, g.GoroutineSlope)
	}
	if g.GoroutineDelta != 4 || math.Abs(g.RSSDelta-40.0/60) > 1e-9 {
		t.Errorf("deltas = %v MiB, %d goroutines", g.RSSDelta, g.GoroutineDelta)
	}
	if _, ok := growth(pts[:7], time.Minute); ok {
		t.Error("growth with one post-warm-up sample reported ok")
	}
}

func TestGoroutineSources(t *testing.T) {
	for _, tt := range []struct {
		desc string
		body string
		want int64
		ok   bool
	}{
		{"top level", `{"cmdline":["shoal"],"goroutines":42}`, 42, true},
		{"nested", `{"shoal":{"runtime":{"NumGoroutine":17}}}`, 17, true},
		{"absent", `{"cmdline":["shoal"],"memstats":{"Alloc":1}}`, 0, false},
		{"not JSON", `404 page not found`, 0, false},
	} {
		n, ok := expvarGoroutines([]byte(tt.body))
		if n != tt.want || ok != tt.ok {
			t.Errorf("%s: expvarGoroutines = %d, %v; want %d, %v", tt.desc, n, ok, tt.want, tt.ok)
		}
	}
	if n, ok := pprofGoroutines([]byte("goroutine profile: total 23\n5 @ 0x1\n")); !ok || n != 23 {
		t.Errorf("pprofGoroutines = %d, %v; want 23", n, ok)
	}
	prom := "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 31\ngo_threads 9\n"
	if n, ok := promGoroutines([]byte(prom)); !ok || n != 31 {
		t.Errorf("promGoroutines = %d, %v; want 31", n, ok)
	}
	if _, ok := promGoroutines([]byte("go_threads 9\n")); ok {
		t.Error("promGoroutines found a count in metrics without go_goroutines")
	}
	if _, ok := pprofGoroutines([]byte("<html>")); ok {
		t.Error("pprofGoroutines accepted HTML")
	}
}
