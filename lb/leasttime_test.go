package lb

import (
	"testing"
	"time"
)

func TestLeastTimeSteersAwayFromSlowBackend(t *testing.T) {
	g := readyGroup(t, MethodLeastTime, equalWeights(3))
	picks := simulate(t, g, []int{40, 2, 2}, 3000)
	if share := float64(picks[0]) / 3000; share > 0.05 {
		t.Errorf("slow backend got %.1f%% of requests (%v), want under 5%%", 100*share, picks)
	}
}

func TestLeastTimePrefersLowLatency(t *testing.T) {
	g := readyGroup(t, MethodLeastTime, equalWeights(2))
	sample := func(b *Backend, d time.Duration) { b.Acquire(); b.Release(d) }
	sample(g.Backends[0], 50*time.Millisecond)
	sample(g.Backends[1], 5*time.Millisecond)
	r := &Request{Now: time.Now().UnixNano()}
	// Held requests: the fast backend takes about ten for each slow one.
	for range 110 {
		g.Select(r).Acquire()
	}
	slow, fast := g.Backends[0].InFlight(), g.Backends[1].InFlight()
	if slow < 8 || slow > 12 || fast < 98 || fast > 102 {
		t.Errorf("in flight slow %d, fast %d; want about 10 and 100", slow, fast)
	}
}

func TestLeastTimeTriesUnmeasuredBackend(t *testing.T) {
	g := readyGroup(t, MethodLeastTime, equalWeights(3))
	for _, b := range g.Backends[:2] {
		b.Acquire()
		b.Release(10 * time.Millisecond)
		b.Acquire() // one in flight
	}
	r := &Request{Now: time.Now().UnixNano()}
	// The unmeasured backend counts as fast as the fastest: idle, it wins.
	if b := g.Select(r); b != g.Backends[2] {
		t.Fatalf("picked %s, want the idle unmeasured %s", b.ID, g.Backends[2].ID)
	}
	// Busier than the others at the same assumed latency, it loses.
	g.Backends[2].Acquire()
	g.Backends[2].Acquire()
	for range 10 {
		if b := g.Select(r); b == g.Backends[2] {
			t.Fatal("picked the unmeasured backend while it is busier than equally fast ones")
		}
	}
}

func TestLeastTimeTiesRotate(t *testing.T) {
	g := readyGroup(t, MethodLeastTime, equalWeights(4))
	got := countPicks(t, g, &Request{Now: time.Now().UnixNano()}, 8)
	for i, n := range got {
		if n != 2 {
			t.Errorf("backend %d picked %d times of 8 with four idle, unmeasured backends; want 2 each (%v)", i, n, got)
		}
	}
}
