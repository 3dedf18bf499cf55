package lb

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// picker selects through one of round robin's two paths.
type picker struct {
	desc string
	pick func(g *Group, r *Request) *Backend
}

var rrPaths = []picker{
	{"schedule", func(g *Group, r *Request) *Backend { return g.Select(r) }},
	{"exact loop", func(g *Group, r *Request) *Backend { return g.sel.(*roundRobin).exact(g, r) }},
}

func TestRoundRobinSmoothInterleave(t *testing.T) {
	tests := []struct {
		desc    string
		weights []int
		want    string // one letter per backend, two cycles
	}{
		{"nginx example 5,1,1", []int{5, 1, 1}, "aabacaa" + "aabacaa"},
		{"equal weights", []int{1, 1, 1}, "abc" + "abc"},
		{"2,1", []int{2, 1}, "aba" + "aba"},
		{"common factor 10,20", []int{10, 20}, "bab" + "bab"},
		{"single backend", []int{7}, "a" + "a"},
	}
	for _, p := range rrPaths {
		for _, tt := range tests {
			t.Run(p.desc+"/"+tt.desc, func(t *testing.T) {
				g := readyGroup(t, MethodRoundRobin, tt.weights)
				r := &Request{Now: time.Now().UnixNano()}
				var got strings.Builder
				for range len(tt.want) {
					got.WriteByte(byte('a' + indexOf(g, p.pick(g, r))))
				}
				if got.String() != tt.want {
					t.Errorf("picks %q, want %q", got.String(), tt.want)
				}
			})
		}
	}
}

func TestRoundRobinExactProportions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range rrPaths {
		for trial := range 50 {
			weights := make([]int, 1+rng.IntN(20))
			sum := 0
			for i := range weights {
				weights[i] = 1 + rng.IntN(10)
				sum += weights[i]
			}
			g := readyGroup(t, MethodRoundRobin, weights)
			r := &Request{Now: time.Now().UnixNano()}
			got := make([]int, len(weights))
			for range 3 * sum {
				got[indexOf(g, p.pick(g, r))]++
			}
			for i, w := range weights {
				if got[i] != 3*w {
					t.Fatalf("%s, trial %d, weights %v: backend %d got %d picks in three cycles, want %d", p.desc, trial, weights, i, got[i], 3*w)
				}
			}
		}
	}
}

func TestRoundRobinSkipsUnusable(t *testing.T) {
	for _, p := range rrPaths {
		t.Run(p.desc, func(t *testing.T) {
			g := readyGroup(t, MethodRoundRobin, []int{5, 1, 1})
			g.Backends[1].SetManualDrain(true)
			r := &Request{Now: time.Now().UnixNano()}
			got := make([]int, 3)
			for range 600 {
				got[indexOf(g, p.pick(g, r))]++
			}
			if got[1] != 0 || got[0] != 500 || got[2] != 100 {
				t.Errorf("picks %v with b drained, want [500 0 100]", got)
			}

			r.Tried = []*Backend{g.Backends[0]}
			for range 20 {
				if b := p.pick(g, r); b != g.Backends[2] {
					t.Fatalf("picked %v with a tried and b drained, want c", b.ID)
				}
			}
			r.Tried = append(r.Tried, g.Backends[2])
			if b := p.pick(g, r); b != nil {
				t.Errorf("picked %s with nothing usable, want nil", b.ID)
			}
		})
	}
}

func TestRoundRobinSlowStart(t *testing.T) {
	g := readyGroup(t, MethodRoundRobin, []int{1, 1}, func(s *Settings) { s.SlowStart = 10 * time.Second })
	now := time.Now().UnixNano()
	g.Backends[0].readyAt.Store(now - int64(time.Minute))
	g.Backends[1].readyAt.Store(now - 5*int64(time.Second)) // halfway: effective weight 500 of 1000

	got := countPicks(t, g, &Request{Now: now}, 300)
	if got[0] != 200 || got[1] != 100 {
		t.Errorf("picks %v with b halfway through slow start, want [200 100]", got)
	}
	// Once the ramp is over the schedule takes over again, 1:1.
	got = countPicks(t, g, &Request{Now: now + int64(10*time.Second)}, 300)
	if got[0] != 150 || got[1] != 150 {
		t.Errorf("picks %v after slow start, want [150 150]", got)
	}
}

func TestRoundRobinLongScheduleFallsBack(t *testing.T) {
	var weights []int // 100 weights from 1000 down, GCD 1, sum above 64Ki
	for i := range 100 {
		weights = append(weights, 1000-i)
	}
	g := readyGroup(t, MethodRoundRobin, weights)
	if g.sel.(*roundRobin).sched.ok() {
		t.Fatal("a schedule of more than 64Ki entries was precomputed")
	}
	sum := 0
	for _, w := range weights {
		sum += w
	}
	// The exact loop keeps every backend within a pick of its share at
	// every point of the cycle, not only at its end.
	const picks = 1000
	got := countPicks(t, g, &Request{Now: time.Now().UnixNano()}, picks)
	for i, w := range weights {
		if want := float64(picks*w) / float64(sum); math.Abs(float64(got[i])-want) > 1.5 {
			t.Fatalf("backend %d (weight %d): %d picks of %d, want %.1f ± 1.5", i, w, got[i], picks, want)
		}
	}
}

func TestRoundRobinConcurrentExact(t *testing.T) {
	g := readyGroup(t, MethodRoundRobin, []int{5, 3, 1, 1})
	const workers, per = 8, 1000 // 8000 picks: 800 cycles of 10
	counts := make([][]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := &Request{Now: time.Now().UnixNano()}
			counts[w] = make([]int, 4)
			for range per {
				counts[w][indexOf(g, g.Select(r))]++
			}
		})
	}
	wg.Wait()
	total := make([]int, 4)
	for _, c := range counts {
		for i, n := range c {
			total[i] += n
		}
	}
	if want := []int{4000, 2400, 800, 800}; !slices.Equal(total, want) {
		t.Errorf("picks %v from %d goroutines, want %v", total, workers, want)
	}
}

// TestEveryMethodSkipsUnusable is the property every method shares: with
// random weights, a random set of drained or tried backends and random keys,
// the pick is usable whenever any backend is, and nil when none is.
func TestEveryMethodSkipsUnusable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, m := range benchMethods {
		t.Run(m.desc, func(t *testing.T) {
			for trial := range 100 {
				weights := make([]int, 1+rng.IntN(12))
				for i := range weights {
					weights[i] = 1 + rng.IntN(5)
				}
				g := readyGroup(t, m.method, weights, m.opts...)
				r := &Request{Now: time.Now().UnixNano(), Rand: seeded(uint64(trial))}
				usable := 0
				for _, b := range g.Backends {
					switch rng.IntN(3) {
					case 0:
						b.SetManualDrain(true)
					case 1:
						r.Tried = append(r.Tried, b)
					default:
						usable++
					}
					for range rng.IntN(4) {
						b.Acquire()
					}
				}
				for k := range 50 {
					if rng.IntN(4) > 0 {
						r.Key = []byte{byte(k), byte(trial), byte(rng.IntN(256))}
					} else {
						r.Key = nil
					}
					b := g.Select(r)
					switch {
					case usable == 0 && b != nil:
						t.Fatalf("trial %d: picked %s with nothing usable", trial, b.ID)
					case usable > 0 && b == nil:
						t.Fatalf("trial %d: picked nothing with %d usable backends", trial, usable)
					case b != nil && !r.Usable(b):
						t.Fatalf("trial %d: picked unusable %s", trial, b.ID)
					}
				}
			}
		})
	}
}
