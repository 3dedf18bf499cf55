package lb

import (
	"slices"
	"testing"
	"time"
)

// maxLoad places balls requests that never finish on g and returns the
// busiest backend's in-flight count.
func maxLoad(tb testing.TB, g *Group, seed uint64, balls int) int64 {
	tb.Helper()
	r := &Request{Now: time.Now().UnixNano(), Rand: seeded(seed)}
	for range balls {
		g.Select(r).Acquire()
	}
	var m int64
	for _, b := range g.Backends {
		m = max(m, b.InFlight())
	}
	return m
}

func TestRandomTwoChoicesLowerMaxLoad(t *testing.T) {
	const n, balls = 100, 10000 // mean 100 per backend
	for seed := range uint64(5) {
		one := maxLoad(t, readyGroup(t, MethodRandom, equalWeights(n), func(s *Settings) { s.RandomChoices = 1 }), seed, balls)
		two := maxLoad(t, readyGroup(t, MethodRandom, equalWeights(n)), seed, balls)
		t.Logf("seed %d: max load %d with one choice, %d with two (mean %d)", seed, one, two, balls/n)
		if two >= one || two > 110 {
			t.Errorf("seed %d: max load %d with two choices, %d with one; want two lower and at most 110", seed, two, one)
		}
	}
}

func TestRandomWeighted(t *testing.T) {
	for _, d := range []int{1, 2, 3} {
		g := readyGroup(t, MethodRandom, []int{1, 3, 6}, func(s *Settings) { s.RandomChoices = d })
		// Requests finish at once: all idle, so the first draw is kept.
		got := countPicks(t, g, &Request{Now: time.Now().UnixNano(), Rand: seeded(7)}, 100000)
		for i, want := range []int{10000, 30000, 60000} {
			if diff := got[i] - want; diff > want/20 || diff < -want/20 {
				t.Errorf("d=%d: backend %d picked %d times, want %d ± 5%% (%v)", d, i, got[i], want, got)
			}
		}
	}
}

func TestRandomSeededIsDeterministic(t *testing.T) {
	pick := func() []int {
		g := readyGroup(t, MethodRandom, []int{1, 2, 3, 4, 5})
		r := &Request{Now: time.Now().UnixNano(), Rand: seeded(42)}
		var out []int
		for range 200 {
			b := g.Select(r)
			b.Acquire()
			out = append(out, indexOf(g, b))
		}
		return out
	}
	if a, b := pick(), pick(); !slices.Equal(a, b) {
		t.Errorf("two runs with the same seed picked differently:\n%v\n%v", a, b)
	}
}

func TestRandomFindsTheLastUsable(t *testing.T) {
	g := readyGroup(t, MethodRandom, equalWeights(100))
	for _, b := range g.Backends[1:] {
		b.SetManualDrain(true)
	}
	r := &Request{Now: time.Now().UnixNano(), Rand: seeded(9)}
	for range 100 {
		if b := g.Select(r); b != g.Backends[0] {
			t.Fatalf("picked %v, want the only usable backend", b)
		}
	}
	g.Backends[0].SetManualDrain(true)
	if b := g.Select(r); b != nil {
		t.Errorf("picked %s with nothing usable", b.ID)
	}
}
