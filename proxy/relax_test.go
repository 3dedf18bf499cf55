package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/lb"
)

// A pool whose every backend passive health took out still serves, as
// NGINX does, rather than answer 503 for fail_timeout.
func TestAllPassiveDownStillServes(t *testing.T) {
	r := newProxyRig(t, Config{})
	a := newTestBackend(t, "a", nil)
	set := settings(func(s *lb.Settings) { s.MaxFails = 1; s.FailTimeout = time.Minute })
	r.update(t, pool("api", set, a))
	r.backend(t, "api", "a").ReportFailure(time.Now())
	if code, body := do(t, "GET", r.url+"/", ""); code != 200 || body != "a" {
		t.Fatalf("got %d %q, want 200 from the only backend", code, body)
	}
}

// A pool whose only backends are stopping (a `docker compose restart` stops
// every replica at once) keeps using them while they still serve.
func TestStoppingBackendsServeWhenNothingElseCan(t *testing.T) {
	r := newProxyRig(t, Config{})
	old, fresh := newTestBackend(t, "old", nil), newTestBackend(t, "fresh", nil)
	st := old.server()
	st.Stopping = true
	r.update(t, lb.PoolSpec{Name: "api", Settings: settings(), Servers: []lb.Server{st}})
	if code, body := do(t, "GET", r.url+"/", ""); code != 200 || body != "old" {
		t.Fatalf("got %d %q, want 200 from the stopping backend", code, body)
	}
	// Once another backend is ready, the stopping one gets nothing.
	r.update(t, lb.PoolSpec{Name: "api", Settings: settings(), Servers: []lb.Server{st, fresh.server()}})
	for i := 0; i < 10; i++ {
		if _, body := do(t, "GET", r.url+"/", ""); body != "fresh" {
			t.Fatalf("request %d went to %q while a ready backend exists", i, body)
		}
	}
}

// A request for a pool whose backend is still starting waits for it, within
// queue_timeout, instead of failing at once.
func TestWaitsForAStartingBackend(t *testing.T) {
	r := newProxyRig(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens yet: the backend stays starting
	set := settings(func(s *lb.Settings) { s.QueueTimeout = 5 * time.Second })
	r.bl.Update("file", []lb.PoolSpec{{Name: "api", Settings: set, Servers: []lb.Server{{ID: "late", Name: "late", Address: addr}}}})

	got := async(t, r.url+"/")
	waitFor(t, 5*time.Second, "the request to wait in the queue", func() bool { return r.px.queueFor("api").waiting.Load() == 1 })
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "late") }))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	select {
	case res := <-got:
		if res.code != 200 || res.body != "late" {
			t.Fatalf("got %d %q, want 200 from the backend that came up", res.code, res.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the queued request was not served once the backend came up")
	}
}

// A pool that lost every backend a moment ago (all replicas restarting)
// holds its requests until a backend is back, instead of 404 or 503.
func TestEmptiedPoolWaitsForNextBackend(t *testing.T) {
	r := newProxyRig(t, Config{})
	first, second := newTestBackend(t, "first", nil), newTestBackend(t, "second", nil)
	r.update(t, pool("api", settings(), first))
	r.bl.Update("file", nil)
	got := async(t, r.url+"/")
	waitFor(t, 5*time.Second, "the request to wait in the queue", func() bool { return r.px.queueFor("api").waiting.Load() == 1 })
	r.bl.Update("file", []lb.PoolSpec{pool("api", settings(), second)})
	select {
	case res := <-got:
		if res.code != 200 || res.body != "second" {
			t.Fatalf("got %d %q, want 200 from the backend that came back", res.code, res.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the queued request was not served once a backend came back")
	}
}
