package lb

import (
	"slices"
	"testing"
	"time"
)

// simulate sends one request per tick to g for ticks ticks. A request to
// backend i holds it for hold[i] ticks and then releases it with a latency
// sample of hold[i] milliseconds. It returns the picks by backend index.
func simulate(tb testing.TB, g *Group, hold []int, ticks int) []int {
	tb.Helper()
	type done struct{ at, i int }
	var pending []done
	picks := make([]int, len(g.Backends))
	r := &Request{Now: time.Now().UnixNano()}
	for t := range ticks {
		kept := pending[:0]
		for _, d := range pending {
			if d.at <= t {
				g.Backends[d.i].Release(time.Duration(hold[d.i]) * time.Millisecond)
			} else {
				kept = append(kept, d)
			}
		}
		pending = kept
		b := g.Select(r)
		if b == nil {
			tb.Fatal("nil pick")
		}
		i := indexOf(g, b)
		b.Acquire()
		picks[i]++
		pending = append(pending, done{t + hold[i], i})
	}
	return picks
}

func TestLeastConnSteersAwayFromSlowBackend(t *testing.T) {
	g := readyGroup(t, MethodLeastConn, equalWeights(3))
	// Backend 0 holds each request 40 ticks, the others 2: with one request
	// per tick it can only take a small share.
	picks := simulate(t, g, []int{40, 2, 2}, 3000)
	if share := float64(picks[0]) / 3000; share > 0.05 {
		t.Errorf("slow backend got %.1f%% of requests (%v), want under 5%%", 100*share, picks)
	}
}

func TestLeastConnWeighted(t *testing.T) {
	g := readyGroup(t, MethodLeastConn, []int{3, 1})
	r := &Request{Now: time.Now().UnixNano()}
	for range 400 { // requests that never finish
		g.Select(r).Acquire()
	}
	if a, b := g.Backends[0].InFlight(), g.Backends[1].InFlight(); a != 300 || b != 100 {
		t.Errorf("in flight %d and %d with weights 3 and 1, want 300 and 100", a, b)
	}
}

func TestLeastConnTiesRotate(t *testing.T) {
	tests := []struct {
		desc     string
		weights  []int
		inflight []int
		picks    int
		want     []int
	}{
		{"idle equal weights", []int{1, 1, 1, 1}, []int{0, 0, 0, 0}, 8, []int{2, 2, 2, 2}},
		{"idle weighted follows the weights", []int{5, 1, 1}, []int{0, 0, 0}, 70, []int{50, 10, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			g := readyGroup(t, MethodLeastConn, tt.weights)
			for i, n := range tt.inflight {
				for range n {
					g.Backends[i].Acquire()
				}
			}
			// Each request finishes before the next: in-flight stays put.
			got := countPicks(t, g, &Request{Now: time.Now().UnixNano()}, tt.picks)
			if !slices.Equal(got, tt.want) {
				t.Errorf("picks %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLeastConnBusyTiesShared(t *testing.T) {
	g := readyGroup(t, MethodLeastConn, equalWeights(4))
	for i, n := range []int{5, 2, 2, 3} {
		for range n {
			g.Backends[i].Acquire()
		}
	}
	// The scan starts at a rotating index, so both tied backends get picks
	// (not evenly: the start lands after the first tied one less often).
	got := countPicks(t, g, &Request{Now: time.Now().UnixNano()}, 100)
	if got[0] != 0 || got[3] != 0 || got[1] < 25 || got[2] < 25 {
		t.Errorf("picks %v with in-flight 5,2,2,3; want only the two at 2, each at least 25", got)
	}
}

func TestLeastConnNeverPicksUnusable(t *testing.T) {
	g := readyGroup(t, MethodLeastConn, equalWeights(3))
	for range 5 {
		g.Backends[1].Acquire()
		g.Backends[2].Acquire()
	}
	g.Backends[0].SetManualDrain(true) // idle, but draining
	got := countPicks(t, g, &Request{Now: time.Now().UnixNano()}, 100)
	if got[0] != 0 {
		t.Errorf("drained backend picked %d times", got[0])
	}
}
