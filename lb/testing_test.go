package lb

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// readyGroup builds a group of ready backends with IDs b0000, b0001, ... and
// the given weights, with DefaultSettings for method changed by opts, and its
// selector built as a routing snapshot builds it.
func readyGroup(tb testing.TB, method string, weights []int, opts ...func(*Settings)) *Group {
	tb.Helper()
	set := DefaultSettings()
	set.Method = method
	for _, o := range opts {
		o(&set)
	}
	bs := make([]*Backend, len(weights))
	for i, w := range weights {
		bs[i] = readyBackend(tb, &set, fmt.Sprintf("b%04d", i), w)
	}
	g := &Group{Backends: bs, Settings: &set}
	g.sel = newSelector(g)
	return g
}

// readyBackend builds one backend that has reached StateReady.
func readyBackend(tb testing.TB, set *Settings, id string, weight int) *Backend {
	tb.Helper()
	b := newBackend(Server{ID: id, Name: id, Address: "192.0.2.1:80", Weight: weight}, "test", set, nil)
	b.portOpen.Store(true)
	b.update()
	if b.State() != StateReady {
		tb.Fatalf("backend %s: state %s (%s), want ready", id, b.State(), b.Reason())
	}
	return b
}

// equalWeights returns n weights of 1.
func equalWeights(n int) []int {
	w := make([]int, n)
	for i := range w {
		w[i] = 1
	}
	return w
}

// indexOf returns b's index in g, or -1 for nil.
func indexOf(g *Group, b *Backend) int {
	for i, x := range g.Backends {
		if x == b {
			return i
		}
	}
	return -1
}

// countPicks selects n times with r and counts the picks by backend index;
// a nil pick fails the test.
func countPicks(tb testing.TB, g *Group, r *Request, n int) []int {
	tb.Helper()
	c := make([]int, len(g.Backends))
	for range n {
		b := g.Select(r)
		if b == nil {
			tb.Fatal("Select returned nil with usable backends")
		}
		c[indexOf(g, b)]++
	}
	return c
}

// seeded returns a deterministic Request.Rand.
func seeded(seed uint64) func() uint64 {
	return rand.New(rand.NewPCG(seed, 0)).Uint64
}
