package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/shoal-lb/shoal/lb"
)

// adminFixture is a real balancer with httptest backends, its metrics and
// the admin API served by an httptest server.
type adminFixture struct {
	bl      *lb.Balancer
	metrics *Metrics
	admin   *Admin
	srv     *httptest.Server
	specs   []lb.PoolSpec
}

// newAdminFixture starts pool "api" with backends api-1 and api-2 (with an
// active health check) and pool "web" with web-1 (host www.example.com), and
// waits until every backend is ready.
func newAdminFixture(t *testing.T, cfg AdminConfig) *adminFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	metrics := NewMetrics(prometheus.NewRegistry())
	bl := lb.New(ctx, lb.Config{
		PoolGrace:     time.Millisecond, // pools that lose every backend leave the table at once
		Log:           zerolog.Nop(),
		ProbeInterval: 10 * time.Millisecond,
		OnState:       metrics.BackendState,
		OnHealthCheck: metrics.HealthCheck,
	})
	server := func(name string) lb.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		addr := strings.TrimPrefix(s.URL, "http://")
		return lb.Server{ID: "file:" + addr, Name: name, Address: addr, Source: "file"}
	}
	api := lb.DefaultSettings()
	api.Method = lb.MethodLeastConn
	api.Path = "/api"
	api.Health.Path = "/healthz"
	api.Health.Interval = 50 * time.Millisecond
	web := lb.DefaultSettings()
	web.Hosts = []string{"www.example.com"}
	f := &adminFixture{bl: bl, metrics: metrics}
	// Given out of order: the API sorts pools by name.
	f.specs = []lb.PoolSpec{
		{Name: "web", Settings: web, Servers: []lb.Server{server("web-1")}},
		{Name: "api", Settings: api, Servers: []lb.Server{server("api-2"), server("api-1")}},
	}
	bl.Update("file", f.specs)
	waitFor(t, 5*time.Second, "every backend ready", func() bool {
		n := 0
		for _, p := range bl.Table().Pools {
			for _, b := range p.Backends() {
				if b.State() != lb.StateReady {
					return false
				}
				n++
			}
		}
		return n == 3
	})
	cfg.Balancer = bl
	cfg.Metrics = metrics
	cfg.Log = zerolog.Nop()
	f.admin = NewAdmin(cfg)
	f.srv = httptest.NewServer(f.admin)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *adminFixture) backend(t *testing.T, pool, name string) *lb.Backend {
	t.Helper()
	p := f.bl.Table().Pools[pool]
	if p == nil {
		t.Fatalf("no pool %q", pool)
	}
	for _, b := range p.Backends() {
		if b.Name() == name {
			return b
		}
	}
	t.Fatalf("pool %q has no backend %q", pool, name)
	return nil
}

// do sends a request to the admin API and returns the status and body.
func (f *adminFixture) do(t *testing.T, method, path string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAdminAuth(t *testing.T) {
	f := newAdminFixture(t, AdminConfig{Token: "s3cret-token"})
	api1 := f.backend(t, "api", "api-1")
	endpoints := []struct{ method, path string }{
		{"GET", "/api/pools"},
		{"GET", "/api/events"},
		{"GET", "/api/events?follow=1"},
		{"POST", "/api/pools/api/backends/" + api1.ID + "/drain"},
		{"POST", "/api/pools/api/backends/" + api1.ID + "/undrain"},
		{"GET", "/metrics"},
		{"GET", "/no/such/endpoint"},
		{"DELETE", "/api/pools"},
	}
	for _, tc := range []struct {
		desc string
		hdr  []string
	}{
		{"no header", nil},
		{"wrong token", []string{"Authorization", "Bearer s3cret-tokem"}},
		{"token prefix", []string{"Authorization", "Bearer s3cret"}},
		{"other scheme", []string{"Authorization", "Basic s3cret-token"}},
		{"bare token", []string{"Authorization", "s3cret-token"}},
	} {
		for _, ep := range endpoints {
			code, body := f.do(t, ep.method, ep.path, tc.hdr...)
			if code != http.StatusUnauthorized {
				t.Errorf("%s: %s %s: got %d, want 401: %s", tc.desc, ep.method, ep.path, code, body)
				continue
			}
			var e struct{ Error string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, "Authorization") {
				t.Errorf("%s: %s %s: the 401 body should say what to send: %q", tc.desc, ep.method, ep.path, body)
			}
		}
	}
	if api1.ManuallyDrained() {
		t.Error("an unauthorized drain drained the backend")
	}

	// Open without a token: /healthz, and the dashboard page, which holds
	// no data and asks for the token itself.
	if code, body := f.do(t, "GET", "/healthz"); code != 200 || body != "ok" {
		t.Errorf("GET /healthz without a token: %d %q, want 200 ok", code, body)
	}
	if code, body := f.do(t, "GET", "/"); code != 200 || !strings.Contains(body, "<title>Shoal</title>") {
		t.Errorf("GET / without a token: %d, want the dashboard page", code)
	}

	auth := []string{"Authorization", "Bearer s3cret-token"}
	for _, ep := range []struct{ method, path string }{
		{"GET", "/api/pools"},
		{"GET", "/api/events"},
		{"GET", "/metrics"},
		{"POST", "/api/pools/api/backends/api-1/drain"},
		{"POST", "/api/pools/api/backends/api-1/undrain"},
	} {
		if code, body := f.do(t, ep.method, ep.path, auth...); code != 200 {
			t.Errorf("%s %s with the token: %d: %s", ep.method, ep.path, code, body)
		}
	}
	if code, _ := f.do(t, "GET", "/api/pools", "Authorization", "bearer s3cret-token"); code != 200 {
		t.Errorf("the scheme is case-insensitive (RFC 9110), got %d", code)
	}
}

func TestAdminPoolsJSON(t *testing.T) {
	f := newAdminFixture(t, AdminConfig{Version: "1.2.3"})
	code, body := f.do(t, "GET", "/api/pools")
	if code != 200 {
		t.Fatalf("GET /api/pools: %d: %s", code, body)
	}
	// The shape, as a client without Shoal's types sees it.
	var raw struct {
		Version string
		Pools   []map[string]json.RawMessage
	}
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Version != "1.2.3" {
		t.Errorf("version = %q", raw.Version)
	}
	if len(raw.Pools) != 2 {
		t.Fatalf("want 2 pools: %s", body)
	}
	for _, k := range []string{"name", "method", "settings", "backends"} {
		if _, ok := raw.Pools[0][k]; !ok {
			t.Errorf("pool has no %q: %s", k, body)
		}
	}
	var backends []map[string]any
	json.Unmarshal(raw.Pools[0]["backends"], &backends)
	for _, k := range []string{"id", "name", "address", "weight", "effective_weight", "backup", "state", "reason",
		"since", "since_seconds", "in_flight", "requests", "failures", "latency_ms"} {
		if _, ok := backends[0][k]; !ok {
			t.Errorf("backend has no %q: %v", k, backends[0])
		}
	}

	var rep StatusReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	api, web := rep.Pools[0], rep.Pools[1]
	if api.Name != "api" || web.Name != "web" {
		t.Fatalf("pools not sorted by name: %s, %s", api.Name, web.Name)
	}
	if api.Method != "least_conn" || api.Settings.Path != "/api" || api.Settings.HealthPath != "/healthz" || api.Settings.HealthInterval != "50ms" {
		t.Errorf("api settings: %+v", api.Settings)
	}
	if api.Settings.HashKey != "" || api.Settings.Hosts != nil {
		t.Errorf("api shows settings that are not set: %+v", api.Settings)
	}
	if len(web.Settings.Hosts) != 1 || web.Settings.Hosts[0] != "www.example.com" || web.Settings.HealthPath != "" {
		t.Errorf("web settings: %+v", web.Settings)
	}
	if len(api.Backends) != 2 || api.Backends[0].Name != "api-1" || api.Backends[1].Name != "api-2" {
		t.Fatalf("api backends, want api-1, api-2 by name: %+v", api.Backends)
	}
	b := api.Backends[0]
	if b.State != "ready" || b.Reason != "ready" || b.Weight != 1 || b.EffectiveWeight != 1 || b.Backup ||
		!strings.HasPrefix(b.ID, "file:127.0.0.1:") || b.Address != strings.TrimPrefix(b.ID, "file:") || b.SinceSeconds < 0 {
		t.Errorf("api-1: %+v", b)
	}
	if strings.Contains(body, "Env") || strings.Contains(body, "env") {
		t.Errorf("the report mentions env: %s", body)
	}
}

func TestAdminStates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bl := lb.New(ctx, lb.Config{Log: zerolog.Nop(), ProbeInterval: 10 * time.Millisecond})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	slow := lb.DefaultSettings()
	slow.SlowStart = time.Hour
	passive := lb.DefaultSettings()
	passive.MaxFails = 1
	passive.FailTimeout = time.Minute
	bl.Update("file", []lb.PoolSpec{
		{Name: "slow", Settings: slow, Servers: []lb.Server{{ID: "s", Name: "s", Address: addr, Weight: 4}}},
		{Name: "passive", Settings: passive, Servers: []lb.Server{{ID: "p", Name: "p", Address: addr}, {ID: "b", Name: "b", Address: addr, Backup: true}}},
		{Name: "closed", Settings: lb.DefaultSettings(), Servers: []lb.Server{{ID: "c", Name: "c", Address: "127.0.0.1:1"}}},
	})
	a := NewAdmin(AdminConfig{Balancer: bl})
	state := func() map[string]BackendStatus {
		out := map[string]BackendStatus{}
		for _, p := range a.Report().Pools {
			for _, b := range p.Backends {
				out[b.Name] = b
			}
		}
		return out
	}
	waitFor(t, 5*time.Second, "s, p and b up", func() bool {
		st := state()
		return st["s"].State == "slow-starting" && st["p"].State == "ready" && st["b"].State == "backup"
	})
	if s := state()["s"]; s.EffectiveWeight <= 0 || s.EffectiveWeight >= 4 || !strings.Contains(s.Reason, "slow start") {
		t.Errorf("slow-starting backend: %+v", s)
	}
	if c := state()["c"]; c.State != "starting" {
		t.Errorf("a backend whose port is closed: %+v, want starting", c)
	}
	for _, p := range bl.Table().Pools["passive"].Backends() {
		if p.ID == "p" {
			p.ReportFailure(time.Now())
		}
	}
	if p := state()["p"]; p.State != "down" || !strings.Contains(p.Reason, "passive") {
		t.Errorf("after a passive failure: %+v, want down", p)
	}
}

func TestAdminDrain(t *testing.T) {
	f := newAdminFixture(t, AdminConfig{})
	api1 := f.backend(t, "api", "api-1")

	code, body := f.do(t, "POST", "/api/pools/api/backends/"+api1.ID+"/drain")
	var b BackendStatus
	if err := json.Unmarshal([]byte(body), &b); code != 200 || err != nil {
		t.Fatalf("drain: %d %v: %s", code, err, body)
	}
	if b.State != "draining" || !strings.Contains(b.Reason, "operator") || !b.Drained {
		t.Errorf("drain answered %+v, want draining by operator", b)
	}
	if api1.State() != lb.StateDraining || !api1.ManuallyDrained() {
		t.Errorf("the backend is %v", api1.State())
	}
	var rep StatusReport
	_, body = f.do(t, "GET", "/api/pools")
	json.Unmarshal([]byte(body), &rep)
	if st := rep.Pools[0].Backends[0]; st.Name != "api-1" || st.State != "draining" {
		t.Errorf("/api/pools after drain: %+v", st)
	}

	// By name too.
	if code, body := f.do(t, "POST", "/api/pools/api/backends/api-1/undrain"); code != 200 || !strings.Contains(body, `"state": "ready"`) {
		t.Errorf("undrain by name: %d: %s", code, body)
	}
	if api1.State() != lb.StateReady {
		t.Errorf("after undrain the backend is %v", api1.State())
	}

	for _, tc := range []struct {
		desc, method, path string
		code               int
		want               string
	}{
		{"unknown pool", "POST", "/api/pools/nope/backends/api-1/drain", 404, `no pool \"nope\"`},
		{"unknown backend", "POST", "/api/pools/api/backends/nope/drain", 404, `pool \"api\" has no backend with id or name \"nope\"`},
		{"backend of another pool", "POST", "/api/pools/web/backends/api-1/undrain", 404, `has no backend`},
		{"GET drain", "GET", "/api/pools/api/backends/api-1/drain", 405, "use POST"},
		{"PUT undrain", "PUT", "/api/pools/api/backends/api-1/undrain", 405, "use POST"},
		{"POST pools", "POST", "/api/pools", 405, "use GET"},
		{"unknown path", "GET", "/api/nothing", 404, "GET /api/pools"},
	} {
		code, body := f.do(t, tc.method, tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %q", tc.desc, code, body, tc.code, tc.want)
		}
	}
	if api1.ManuallyDrained() {
		t.Error("a failed request drained the backend")
	}

	// A browser's cross-site POST is refused: CSRF against a token-less
	// admin API on loopback.
	code, _ = f.do(t, "POST", "/api/pools/api/backends/api-1/drain", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if code != http.StatusForbidden || api1.ManuallyDrained() {
		t.Errorf("a cross-site POST got %d (drained: %v), want 403", code, api1.ManuallyDrained())
	}
}

func TestAdminEvents(t *testing.T) {
	f := newAdminFixture(t, AdminConfig{})
	code, body := f.do(t, "GET", "/api/events")
	var got struct{ Events []lb.Event }
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil {
		t.Fatalf("GET /api/events: %d %v: %s", code, err, body)
	}
	discovered := 0
	for _, e := range got.Events {
		if e.Kind == "discovered" {
			discovered++
		}
	}
	if discovered != 3 {
		t.Errorf("want 3 discovered events: %s", body)
	}

	for i := 0; i < 300; i++ {
		f.bl.Events().Add(lb.Event{Kind: "test", Message: "filler"})
	}
	_, body = f.do(t, "GET", "/api/events")
	json.Unmarshal([]byte(body), &got)
	if len(got.Events) != 200 || got.Events[199].Kind != "test" {
		t.Errorf("want the last 200 events, got %d", len(got.Events))
	}
}

func TestAdminEventStream(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	f := newAdminFixture(t, AdminConfig{Token: "tok", Heartbeat: 20 * time.Millisecond})
	// Wrap the handler to see when the stream's handler returns.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.admin.ServeHTTP(w, r)
		close(done)
	}))
	defer srv.Close()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events?follow=1", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, ct)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// next returns the next event, noting heartbeats on the way.
	heartbeats := 0
	next := func() lb.Event {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("the stream ended")
				}
				if l == ": heartbeat" {
					heartbeats++
				}
				if d, ok := strings.CutPrefix(l, "data: "); ok {
					var e lb.Event
					if err := json.Unmarshal([]byte(d), &e); err != nil {
						t.Fatalf("bad event %q: %v", d, err)
					}
					return e
				}
			case <-timeout:
				t.Fatal("no event within 5s")
			}
		}
	}
	// The recent events come first: three backends discovered.
	seen := map[string]bool{}
	for len(seen) < 3 {
		e := next()
		if e.Kind == "discovered" {
			seen[e.Name] = true
		}
	}
	// Then new ones as they happen, each once.
	api2 := f.backend(t, "api", "api-2")
	if err := f.bl.Drain("api", api2.ID, true); err != nil {
		t.Fatal(err)
	}
	for {
		e := next()
		if e.Kind == "drain" {
			if e.Name != "api-2" || e.Message != "drained by operator" {
				t.Errorf("drain event: %+v", e)
			}
			break
		}
	}
	f.bl.Events().Add(lb.Event{Kind: "test", Message: "after"})
	for {
		if e := next(); e.Kind == "test" {
			break
		}
	}
	waitFor(t, 5*time.Second, "a heartbeat", func() bool {
		select {
		case l := <-lines:
			if l == ": heartbeat" {
				heartbeats++
			}
		default:
		}
		return heartbeats > 0
	})
	// The handler ends when the client goes away.
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream handler did not return after the client went away")
	}
}
