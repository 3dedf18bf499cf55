package lb

import (
	"strings"
	"testing"
	"time"
)

// transitions records a backend's state changes.
type transitions struct {
	got []string
}

func (tr *transitions) hook(b *Backend, from, to State, reason string) {
	tr.got = append(tr.got, from.String()+"->"+to.String()+": "+reason)
}

func TestStateFromInputs(t *testing.T) {
	cases := []struct {
		desc                             string
		portOpen, activeReady, activeDwn bool
		manual, stopping                 bool
		dockerHealth                     string
		want                             State
	}{
		{desc: "port closed", want: StateStarting},
		{desc: "port open, no active check", portOpen: true, activeReady: true, want: StateReady},
		{desc: "waiting for the first active check", portOpen: true, want: StateStarting},
		{desc: "active check failing", portOpen: true, activeReady: true, activeDwn: true, want: StateDown},
		{desc: "docker health starting", portOpen: true, activeReady: true, dockerHealth: "starting", want: StateStarting},
		{desc: "docker healthy", portOpen: true, activeReady: true, dockerHealth: "healthy", want: StateReady},
		{desc: "docker unhealthy", portOpen: true, activeReady: true, dockerHealth: "unhealthy", want: StateDown},
		{desc: "stopping wins over ready", portOpen: true, activeReady: true, stopping: true, want: StateDraining},
		{desc: "stopping wins over unhealthy", portOpen: true, activeReady: true, dockerHealth: "unhealthy", stopping: true, want: StateDraining},
		{desc: "operator drain", portOpen: true, activeReady: true, manual: true, want: StateDraining},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			set := DefaultSettings()
			b := newBackend(Server{ID: "x", Address: "192.0.2.1:80", DockerHealth: tc.dockerHealth, Stopping: tc.stopping}, "p", &set, nil)
			b.portOpen.Store(tc.portOpen)
			b.activeReady.Store(tc.activeReady)
			b.activeDown.Store(tc.activeDwn)
			b.manualDrain.Store(tc.manual)
			b.update()
			if b.State() != tc.want {
				t.Fatalf("state %s (%s), want %s", b.State(), b.Reason(), tc.want)
			}
			if avail := b.Available(time.Now().UnixNano()); avail != (tc.want == StateReady) {
				t.Fatalf("Available = %v in state %s", avail, b.State())
			}
		})
	}
}

func TestPassiveHealth(t *testing.T) {
	set := DefaultSettings()
	set.MaxFails = 3
	set.FailTimeout = time.Second
	b := readyBackend(t, &set, "b", 1)
	var tr transitions
	b.onChange = tr.hook
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ns := func(d time.Duration) int64 { return at(d).UnixNano() }

	// Three failures spread over more than fail_timeout: never down.
	for _, d := range []time.Duration{0, 600 * time.Millisecond, 1200 * time.Millisecond, 1800 * time.Millisecond} {
		if b.ReportFailure(at(d)) {
			t.Fatalf("failure at +%v marked the backend down, but the failures were not within fail_timeout", d)
		}
	}
	if !b.Available(ns(1800 * time.Millisecond)) {
		t.Fatal("backend unavailable after failures spread beyond fail_timeout")
	}

	// Three within the window: down for fail_timeout, then back.
	base := 10 * time.Second
	if b.ReportFailure(at(base)) || b.ReportFailure(at(base+100*time.Millisecond)) {
		t.Fatal("down before max_fails failures")
	}
	if !b.ReportFailure(at(base + 200*time.Millisecond)) {
		t.Fatal("max_fails failures within fail_timeout did not mark the backend down")
	}
	downAt := base + 200*time.Millisecond
	for _, d := range []time.Duration{downAt, downAt + 500*time.Millisecond, downAt + time.Second - 1} {
		if b.Available(ns(d)) || !b.PassiveDown(ns(d)) {
			t.Fatalf("available at +%v, within fail_timeout of being marked down", d-downAt)
		}
	}
	if b.ReportFailure(at(downAt + 300*time.Millisecond)) {
		t.Fatal("a failure while already down reported a new transition")
	}
	if !b.Available(ns(downAt + time.Second + 1)) {
		t.Fatal("not available again after fail_timeout")
	}
	if b.State() != StateReady {
		t.Fatalf("passive health changed the state to %s; it should only keep the backend out for a while", b.State())
	}
	if len(tr.got) != 1 || !strings.Contains(tr.got[0], "passive: 3 failure(s) within 1s") {
		t.Fatalf("transitions %q, want one passive ready->down", tr.got)
	}
	if b.Failures() != 8 {
		t.Fatalf("Failures() = %d, want 8", b.Failures())
	}
}

func TestPassiveHealthOff(t *testing.T) {
	set := DefaultSettings()
	set.MaxFails = 0
	b := readyBackend(t, &set, "b", 1)
	now := time.Now()
	for i := 0; i < 100; i++ {
		if b.ReportFailure(now) {
			t.Fatal("max_fails=0 marked the backend down")
		}
	}
	if !b.Available(now.UnixNano()) {
		t.Fatal("max_fails=0: backend unavailable after failures")
	}
}

func TestSlowStartRamps(t *testing.T) {
	set := DefaultSettings()
	set.SlowStart = 10 * time.Second
	b := readyBackend(t, &set, "b", 5)
	full := 5 * 1000

	ramp := func(what string) {
		t.Helper()
		r := b.readyAt.Load()
		if !b.SlowStarting(r + 1) {
			t.Fatalf("%s: not slow-starting right after becoming ready", what)
		}
		if got := b.EffectiveWeight(r); got != full/10 {
			t.Fatalf("%s: effective weight at the start %d, want %d (a tenth)", what, got, full/10)
		}
		prev := 0
		for s := 0; s <= 10; s++ {
			got := b.EffectiveWeight(r + int64(s)*int64(time.Second))
			if got < prev {
				t.Fatalf("%s: effective weight fell from %d to %d at %ds", what, prev, got, s)
			}
			if s >= 1 {
				if want := full * s / 10; got != want {
					t.Fatalf("%s: effective weight at %ds = %d, want %d", what, s, got, want)
				}
			}
			prev = got
		}
		if b.SlowStarting(r + int64(10*time.Second)) {
			t.Fatalf("%s: still slow-starting after the window", what)
		}
		if got := b.EffectiveWeight(r + int64(time.Minute)); got != full {
			t.Fatalf("%s: effective weight after the window %d, want %d", what, got, full)
		}
	}
	ramp("first start")

	// Down and back: the ramp starts over.
	first := b.readyAt.Load()
	b.activeDown.Store(true)
	b.update()
	if b.State() != StateDown {
		t.Fatalf("state %s, want down", b.State())
	}
	b.activeDown.Store(false)
	b.update()
	if b.State() != StateReady || b.readyAt.Load() < first {
		t.Fatalf("state %s, readyAt not moved on recovery", b.State())
	}
	ramp("after recovery")

	set2 := DefaultSettings()
	off := readyBackend(t, &set2, "c", 3)
	if got := off.EffectiveWeight(off.readyAt.Load()); got != 3000 {
		t.Fatalf("slow_start off: effective weight %d, want 3000", got)
	}
}

func TestSlowStartWeightOneNeverZero(t *testing.T) {
	set := DefaultSettings()
	set.SlowStart = time.Hour
	b := readyBackend(t, &set, "b", 1)
	if got := b.EffectiveWeight(b.readyAt.Load()); got < 1 {
		t.Fatalf("effective weight %d: a slow-starting backend must never weigh 0", got)
	}
}

func TestMaxConnsAvailability(t *testing.T) {
	set := DefaultSettings()
	set.MaxConns = 2
	b := readyBackend(t, &set, "b", 1)
	now := time.Now().UnixNano()
	b.Acquire()
	if !b.Available(now) {
		t.Fatal("unavailable with 1 of max_conns=2 in flight")
	}
	b.Acquire()
	if b.Available(now) {
		t.Fatal("available with max_conns=2 in flight")
	}
	b.Release(time.Millisecond)
	if !b.Available(now) {
		t.Fatal("unavailable after a slot freed")
	}
	if b.InFlight() != 1 || b.Requests() != 2 {
		t.Fatalf("in flight %d, requests %d; want 1 and 2", b.InFlight(), b.Requests())
	}
}

func TestDrainKeepsInFlight(t *testing.T) {
	set := DefaultSettings()
	b := readyBackend(t, &set, "b", 1)
	var tr transitions
	b.onChange = tr.hook
	b.Acquire() // a request in flight when the container is told to stop
	sv := b.Server()
	sv.Stopping = true
	b.spec.Store(&sv)
	b.update()
	if b.State() != StateDraining || b.Available(time.Now().UnixNano()) {
		t.Fatalf("stopping backend: state %s, available %v; want draining, unavailable", b.State(), b.Available(time.Now().UnixNano()))
	}
	if b.InFlight() != 1 {
		t.Fatalf("in flight %d after drain, want the request to carry on", b.InFlight())
	}
	b.Release(time.Millisecond)
	if b.InFlight() != 0 {
		t.Fatalf("in flight %d after the request finished", b.InFlight())
	}
	if len(tr.got) != 1 || tr.got[0] != "ready->draining: container is stopping" {
		t.Fatalf("transitions %q", tr.got)
	}
	b.update() // no change: no second transition
	if len(tr.got) != 1 {
		t.Fatalf("an update without a change fired a transition: %q", tr.got)
	}
}
