package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/proxy"
)

var statusFixture = proxy.StatusReport{
	Version: "test",
	Pools: []proxy.PoolStatus{
		{Name: "api", Method: "least_conn", Backends: []proxy.BackendStatus{
			{ID: "c1", Name: "api-1", Address: "172.20.0.2:8000", Weight: 2, EffectiveWeight: 2, State: "ready", InFlight: 3, Requests: 1200, Failures: 1, LatencyMS: 1.234},
			{ID: "c2", Name: "api-2", Address: "172.20.0.3:8000", Weight: 4, EffectiveWeight: 0.4, State: "slow-starting", Requests: 7, LatencyMS: 250},
			{ID: "c3", Name: "api-3", Address: "172.20.0.4:8000", Weight: 1, EffectiveWeight: 1, State: "draining", Reason: "drained by operator"},
		}},
		{Name: "empty", Method: "round_robin", Backends: []proxy.BackendStatus{}},
	},
}

// statusServer serves statusFixture on /api/pools, requiring token when set.
func statusServer(t *testing.T, token string) (*httptest.Server, func() int) {
	t.Helper()
	var mu sync.Mutex
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/pools" {
			http.NotFound(w, r)
			return
		}
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"unauthorized: the admin token in the Authorization header is wrong"}`))
			return
		}
		mu.Lock()
		hits++
		mu.Unlock()
		json.NewEncoder(w).Encode(statusFixture)
	}))
	t.Cleanup(srv.Close)
	return srv, func() int {
		mu.Lock()
		defer mu.Unlock()
		return hits
	}
}

func noEnv(string) string { return "" }

func TestStatusTable(t *testing.T) {
	srv, _ := statusServer(t, "")
	var out, errOut bytes.Buffer
	code := runStatus(context.Background(), []string{"--admin", srv.URL}, &out, &errOut, noEnv)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := [][]string{
		{"POOL", "METHOD", "BACKEND", "ADDRESS", "STATE", "WEIGHT", "IN-FLIGHT", "REQUESTS", "FAILURES", "LATENCY"},
		{"api", "least_conn", "api-1", "172.20.0.2:8000", "ready", "2", "3", "1200", "1", "1.23ms"},
		{"api", "least_conn", "api-2", "172.20.0.3:8000", "slow-starting", "0.4/4", "0", "7", "0", "250ms"},
		{"api", "least_conn", "api-3", "172.20.0.4:8000", "draining", "1", "0", "0", "0", "-"},
		{"empty", "round_robin", "-", "-", "-", "-", "-", "-", "-", "-"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, l := range lines {
		if got := strings.Fields(l); strings.Join(got, "|") != strings.Join(want[i], "|") {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
	}
	// Aligned: every column starts at the same offset on every line.
	if col := strings.Index(lines[0], "BACKEND"); strings.Index(lines[4], "-") != col {
		t.Errorf("columns are not aligned:\n%s", out.String())
	}
}

func TestStatusJSON(t *testing.T) {
	srv, _ := statusServer(t, "")
	var out, errOut bytes.Buffer
	if code := runStatus(context.Background(), []string{"--json", "--admin", srv.URL}, &out, &errOut, noEnv); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rep proxy.StatusReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Pools) != 2 || rep.Pools[0].Backends[1].Name != "api-2" {
		t.Errorf("--json printed %q (%v)", out.String(), err)
	}
}

func TestStatusToken(t *testing.T) {
	srv, _ := statusServer(t, "s3cret")
	env := func(k string) string {
		return map[string]string{"SHOAL_ADMIN": srv.URL, "SHOAL_ADMIN_TOKEN": "s3cret"}[k]
	}
	var out, errOut bytes.Buffer
	if code := runStatus(context.Background(), nil, &out, &errOut, env); code != 0 || !strings.Contains(out.String(), "api-1") {
		t.Errorf("with SHOAL_ADMIN and SHOAL_ADMIN_TOKEN: exit %d: %s%s", code, out.String(), errOut.String())
	}
	for _, tc := range []struct {
		desc string
		args []string
		want string
	}{
		{"no token", []string{"--admin", srv.URL}, "needs a token: pass --admin-token or set SHOAL_ADMIN_TOKEN"},
		{"wrong token", []string{"--admin", srv.URL, "--admin-token", "nope"}, "refused the token"},
	} {
		out.Reset()
		errOut.Reset()
		code := runStatus(context.Background(), tc.args, &out, &errOut, noEnv)
		if code != 1 || !strings.Contains(errOut.String(), tc.want) || !strings.Contains(errOut.String(), "401") {
			t.Errorf("%s: exit %d, stderr %q, want 1 and %q", tc.desc, code, errOut.String(), tc.want)
		}
	}
}

func TestStatusUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close() // nothing listens there now
	var out, errOut bytes.Buffer
	code := runStatus(context.Background(), []string{"--admin", addr, "--timeout", "2s"}, &out, &errOut, noEnv)
	if code != 1 || !strings.Contains(errOut.String(), "cannot reach the admin API at http://"+addr) ||
		!strings.Contains(errOut.String(), "connection refused") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}

	for _, tc := range []struct{ args []string }{
		{[]string{"--admin", "nohostport"}},
		{[]string{"--interval", "0s"}},
		{[]string{"extra"}},
		{[]string{"--bogus"}},
	} {
		errOut.Reset()
		if code := runStatus(context.Background(), tc.args, &out, &errOut, noEnv); code != 2 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q, want 2 and a message", tc.args, code, errOut.String())
		}
	}
}

func TestStatusAdminURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:9180", "http://127.0.0.1:9180"},
		{":9180", "http://127.0.0.1:9180"},
		{"0.0.0.0:9180", "http://127.0.0.1:9180"},
		{"[::]:9180", "http://[::1]:9180"},
		{"localhost:1", "http://localhost:1"},
		{"https://lb.example.com/", "https://lb.example.com"},
	} {
		if got, err := adminURL(tc.in); err != nil || got != tc.want {
			t.Errorf("adminURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestStatusWatch(t *testing.T) {
	srv, hits := statusServer(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	out := &statusOutput{}
	done := make(chan int)
	go func() {
		done <- runStatus(ctx, []string{"--watch", "--interval", "10ms", "--admin", srv.URL}, out, out, noEnv)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(out.String(), "\x1b[H\x1b[2J") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 refreshes in 5s: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("--watch ended with %d after an interrupt, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("--watch did not stop when interrupted")
	}
	if n := hits(); n < 3 || strings.Count(out.String(), "api-1") < 3 {
		t.Errorf("%d requests; output %q", n, out.String())
	}
}

type statusOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *statusOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *statusOutput) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
