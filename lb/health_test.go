package lb

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// healthServer is an httptest backend whose /health answers status.
type healthServer struct {
	*httptest.Server
	status atomic.Int32
	checks atomic.Int64
}

func newHealthServer(t *testing.T) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.status.Store(200)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			h.checks.Add(1)
			w.WriteHeader(int(h.status.Load()))
			return
		}
		w.Write([]byte("hi"))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *healthServer) addr() string { return strings.TrimPrefix(h.URL, "http://") }

// syncBuf is a log sink safe for the health goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// healthRig is a balancer with one pool "p" whose backends are checked fast.
type healthRig struct {
	bl   *Balancer
	log  *syncBuf
	mu   sync.Mutex
	seen []string // "from->to" transitions
	oks  atomic.Int64
	bads atomic.Int64
}

func newHealthRig(t *testing.T) *healthRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &healthRig{log: &syncBuf{}}
	r.bl = New(ctx, Config{
		Log:           zerolog.New(r.log),
		ProbeInterval: 5 * time.Millisecond,
		OnState: func(b *Backend, from, to State, reason string) {
			r.mu.Lock()
			r.seen = append(r.seen, from.String()+"->"+to.String())
			r.mu.Unlock()
		},
		OnHealthCheck: func(b *Backend, ok bool) {
			if ok {
				r.oks.Add(1)
			} else {
				r.bads.Add(1)
			}
		},
	})
	return r
}

func (r *healthRig) transitions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func (r *healthRig) backend(t *testing.T, id string) *Backend {
	t.Helper()
	for _, b := range r.bl.Table().Pools["p"].Backends() {
		if b.ID == id {
			return b
		}
	}
	t.Fatalf("no backend %s", id)
	return nil
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// watchers counts the live health goroutines of this process's balancers.
func watchers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "lb.(*Balancer).watch(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func activeSettings() Settings {
	set := DefaultSettings()
	set.Health.Path = "/health"
	set.Health.Interval = 10 * time.Millisecond
	set.Health.Timeout = 500 * time.Millisecond
	set.Health.Fails = 3
	set.Health.Passes = 2
	return set
}

func TestActiveHealthThresholds(t *testing.T) {
	srv := newHealthServer(t)
	r := newHealthRig(t)
	r.bl.Update("file", []PoolSpec{{Name: "p", Settings: activeSettings(), Servers: []Server{{ID: "a", Name: "a", Address: srv.addr()}}}})
	b := r.backend(t, "a")
	waitUntil(t, 5*time.Second, "ready after the first passing check", func() bool { return b.State() == StateReady })

	srv.status.Store(503)
	bads := r.bads.Load()
	waitUntil(t, 5*time.Second, "down after failing checks", func() bool { return b.State() == StateDown })
	if n := r.bads.Load() - bads; n < 3 {
		t.Errorf("down after %d failing checks, want health.fails=3", n)
	}
	// Keep failing for a while: no more transitions, no more log lines.
	more := r.bads.Load() + 10
	waitUntil(t, 5*time.Second, "more failing checks", func() bool { return r.bads.Load() >= more })

	srv.status.Store(200)
	oks := r.oks.Load()
	waitUntil(t, 5*time.Second, "ready after passing checks", func() bool { return b.State() == StateReady })
	if n := r.oks.Load() - oks; n < 2 {
		t.Errorf("ready again after %d passing checks, want health.passes=2", n)
	}

	want := []string{"starting->ready", "ready->down", "down->ready"}
	if got := r.transitions(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("transitions %q, want %q", got, want)
	}
	if n := r.log.count(`"to":"down"`); n != 1 {
		t.Errorf("the down transition was logged %d times, want once", n)
	}
	if n := r.log.count(`"backend state changed"`); n != 3 {
		t.Errorf("%d state change lines logged, want 3:\n%s", n, r.log.b.String())
	}
}

func TestActiveHealthNeverPassing(t *testing.T) {
	srv := newHealthServer(t)
	srv.status.Store(500)
	r := newHealthRig(t)
	r.bl.Update("file", []PoolSpec{{Name: "p", Settings: activeSettings(), Servers: []Server{{ID: "a", Name: "a", Address: srv.addr()}}}})
	b := r.backend(t, "a")
	waitUntil(t, 5*time.Second, "several failing checks", func() bool { return r.bads.Load() >= 5 })
	if b.State() != StateStarting {
		t.Fatalf("a backend that never passed its check is %s (%s), want starting", b.State(), b.Reason())
	}
	srv.status.Store(200)
	waitUntil(t, 5*time.Second, "ready on the first pass", func() bool { return b.State() == StateReady })
}

func TestActiveHealthStatusRange(t *testing.T) {
	srv := newHealthServer(t)
	srv.status.Store(302)
	r := newHealthRig(t)
	set := activeSettings()
	set.Health.StatusLo, set.Health.StatusHi = 200, 299
	r.bl.Update("file", []PoolSpec{{Name: "p", Settings: set, Servers: []Server{{ID: "a", Name: "a", Address: srv.addr()}}}})
	waitUntil(t, 5*time.Second, "checks", func() bool { return r.bads.Load() >= 3 })
	if r.oks.Load() != 0 {
		t.Fatalf("302 passed a check that accepts 200-299")
	}
}

func TestHealthCheckTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	r := newHealthRig(t)
	set := activeSettings()
	set.Health.Timeout = 20 * time.Millisecond
	r.bl.Update("file", []PoolSpec{{Name: "p", Settings: set, Servers: []Server{{ID: "a", Name: "a", Address: strings.TrimPrefix(srv.URL, "http://")}}}})
	waitUntil(t, 5*time.Second, "timed-out checks counted as failures", func() bool { return r.bads.Load() >= 2 })
}

func TestWatcherEndsWhenBackendRemoved(t *testing.T) {
	srv := newHealthServer(t)
	// A port that refuses connections: its watcher stays in the probe loop.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	// Watchers of earlier tests end when their balancer's context does.
	waitUntil(t, 5*time.Second, "no health goroutines left from earlier tests", func() bool { return watchers() == 0 })
	before := 0
	r := newHealthRig(t)
	r.bl.Update("file", []PoolSpec{{Name: "p", Settings: activeSettings(), Servers: []Server{
		{ID: "checked", Name: "checked", Address: srv.addr()},
		{ID: "probing", Name: "probing", Address: closed},
	}}})
	checked := r.backend(t, "checked")
	waitUntil(t, 5*time.Second, "the checked backend ready", func() bool { return checked.State() == StateReady })
	waitUntil(t, 5*time.Second, "one health goroutine per backend", func() bool { return watchers()-before == 2 })
	if st := r.backend(t, "probing").State(); st != StateStarting {
		t.Fatalf("backend on a closed port is %s, want starting", st)
	}

	r.bl.Update("file", nil)
	waitUntil(t, 5*time.Second, "health goroutines to end after removal", func() bool { return watchers() == before })
}

func TestHealthPathChangeRestartsWatcher(t *testing.T) {
	srv := newHealthServer(t)
	waitUntil(t, 5*time.Second, "no health goroutines left from earlier tests", func() bool { return watchers() == 0 })
	before := 0
	r := newHealthRig(t)
	set := activeSettings()
	r.bl.Update("file", []PoolSpec{{Name: "p", Settings: set, Servers: []Server{{ID: "a", Name: "a", Address: srv.addr()}}}})
	waitUntil(t, 5*time.Second, "ready", func() bool { return r.backend(t, "a").State() == StateReady })
	set.Health.Path = "/other"
	r.bl.Update("file", []PoolSpec{{Name: "p", Settings: set, Servers: []Server{{ID: "a", Name: "a", Address: srv.addr()}}}})
	waitUntil(t, 5*time.Second, "exactly one watcher after the health check changed", func() bool { return watchers()-before == 1 })
}
