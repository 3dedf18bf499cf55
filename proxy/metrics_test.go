package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shoal-lb/shoal/lb"
)

// scrape fetches /metrics through the admin API and parses it with the
// Prometheus text parser.
func scrape(t *testing.T, f *adminFixture) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+"/metrics", nil)
	req.Header.Set("Accept", "text/plain") // the text format, not protobuf
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// value returns the value of the series of family name whose labels include
// labels (name, value pairs), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsTraffic(t *testing.T) {
	f := newAdminFixture(t, AdminConfig{})
	m := f.metrics
	tbl := f.bl.Table()
	api, web := tbl.Pools["api"], tbl.Pools["web"]
	api1, api2 := f.backend(t, "api", "api-1"), f.backend(t, "api", "api-2")

	before := scrape(t, f)
	if _, ok := value(before, "shoal_requests_total", "pool", "api"); ok {
		t.Error("request series before any request")
	}
	if v, _ := value(before, "shoal_backend_state", "pool", "api", "backend", "api-1", "state", "ready"); v != 1 {
		t.Error("shoal_backend_state of api-1 is not ready")
	}
	if v, _ := value(before, "shoal_health_checks_total", "pool", "api", "result", "ok"); v < 2 {
		t.Errorf("health checks ok = %v, want at least one per api backend", v)
	}
	if v, ok := value(before, "shoal_config_reloads_total", "result", "failed"); !ok || v != 0 {
		t.Error("shoal_config_reloads_total{result=failed} should be there at 0")
	}

	for i := 0; i < 5; i++ {
		m.Request(api, api1, 200, 3*time.Millisecond)
	}
	m.Request(api, api2, 502, 40*time.Millisecond)
	m.Request(api, nil, 503, time.Millisecond)
	m.Request(web, f.backend(t, "web", "web-1"), 404, time.Millisecond)
	m.Request(nil, nil, 404, 0)
	m.Retry(api)
	m.DiscoveryEvent("start")
	m.DiscoveryEvent("start")
	m.DiscoveryError()
	m.ConfigReload(true)
	m.ConfigReload(false)
	m.DockerConnected(true)
	api1.Acquire() // a request in flight
	defer api1.Release(0)
	if err := f.bl.Drain("api", api2.ID, true); err != nil {
		t.Fatal(err)
	}

	after := scrape(t, f)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"shoal_requests_total", []string{"pool", "api", "backend", "api-1", "class", "2xx"}, 5},
		{"shoal_requests_total", []string{"pool", "api", "backend", "api-2", "class", "5xx"}, 1},
		{"shoal_requests_total", []string{"pool", "api", "backend", "", "class", "5xx"}, 1},
		{"shoal_requests_total", []string{"pool", "web", "backend", "web-1", "class", "4xx"}, 1},
		{"shoal_requests_total", []string{"pool", "", "backend", "", "class", "4xx"}, 1},
		{"shoal_request_duration_seconds", []string{"pool", "api"}, 7},
		{"shoal_request_duration_seconds", []string{"pool", ""}, 1},
		{"shoal_retries_total", []string{"pool", "api"}, 1},
		{"shoal_discovery_events_total", []string{"action", "start"}, 2},
		{"shoal_discovery_errors_total", nil, 1},
		{"shoal_config_reloads_total", []string{"result", "ok"}, 1},
		{"shoal_config_reloads_total", []string{"result", "failed"}, 1},
		{"shoal_docker_connected", nil, 1},
		{"shoal_backend_in_flight", []string{"pool", "api", "backend", "api-1"}, 1},
		{"shoal_backend_in_flight", []string{"pool", "api", "backend", "api-2"}, 0},
		{"shoal_backend_state", []string{"pool", "api", "backend", "api-2", "state", "draining"}, 1},
		{"shoal_backend_transitions_total", []string{"pool", "api", "state", "draining"}, 1},
		{"shoal_backend_effective_weight", []string{"pool", "web", "backend", "web-1"}, 1},
	} {
		got, ok := value(after, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (found: %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := value(after, "shoal_backend_state", "backend", "api-2", "state", "ready"); ok {
		t.Error("api-2 has a second state series")
	}
	if _, ok := after["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// TestMetricsForgetGoneBackends checks that series of backends and pools that
// left the table are deleted, so that container churn does not grow the
// exposition.
func TestMetricsForgetGoneBackends(t *testing.T) {
	f := newAdminFixture(t, AdminConfig{})
	tbl := f.bl.Table()
	f.metrics.Request(tbl.Pools["api"], f.backend(t, "api", "api-2"), 200, time.Millisecond)
	f.metrics.Request(tbl.Pools["web"], f.backend(t, "web", "web-1"), 200, time.Millisecond)
	f.metrics.Request(tbl.Pools["api"], f.backend(t, "api", "api-1"), 200, time.Millisecond)

	// api-2 and pool web go away.
	api := f.specs[1]
	for i, s := range api.Servers {
		if s.Name == "api-2" {
			api.Servers = append(api.Servers[:i:i], api.Servers[i+1:]...)
			break
		}
	}
	f.bl.Update("file", []lb.PoolSpec{api})
	waitFor(t, 5*time.Second, "the new table", func() bool { return f.bl.Table().Pools["web"] == nil })

	mfs := scrape(t, f)
	if _, ok := value(mfs, "shoal_requests_total", "backend", "api-2"); ok {
		t.Error("a removed backend keeps its request series")
	}
	if _, ok := value(mfs, "shoal_backend_state", "backend", "api-2"); ok {
		t.Error("a removed backend keeps its state series")
	}
	if _, ok := value(mfs, "shoal_request_duration_seconds", "pool", "web"); ok {
		t.Error("a removed pool keeps its duration series")
	}
	if v, _ := value(mfs, "shoal_requests_total", "backend", "api-1"); v != 1 {
		t.Errorf("a remaining backend lost its count: %v", v)
	}
	// Counting goes on for the backends that stay, through the new table.
	f.metrics.Request(f.bl.Table().Pools["api"], f.backend(t, "api", "api-1"), 200, time.Millisecond)
	mfs = scrape(t, f)
	if v, _ := value(mfs, "shoal_requests_total", "backend", "api-1", "class", "2xx"); v != 2 {
		t.Errorf("api-1 after the table change = %v, want 2", v)
	}
}

func TestMetricsDisabled(t *testing.T) {
	f := newAdminFixture(t, AdminConfig{})
	a := NewAdmin(AdminConfig{Balancer: f.bl})
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 404 {
		t.Errorf("/metrics without Metrics: %d, want 404", rec.Code)
	}
}

func TestObserverRequestNoAllocs(t *testing.T) {
	f := newAdminFixture(t, AdminConfig{})
	pool := f.bl.Table().Pools["api"]
	b := f.backend(t, "api", "api-1")
	f.metrics.Request(pool, b, 200, time.Millisecond) // first sight creates the series
	f.metrics.Request(pool, nil, 503, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() {
		f.metrics.Request(pool, b, 200, time.Millisecond)
		f.metrics.Request(pool, nil, 503, time.Millisecond)
		f.metrics.Retry(pool)
	}); n != 0 {
		t.Errorf("Metrics.Request allocates %v times per call, want 0", n)
	}
}

func BenchmarkObserverRequest(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	set := lb.DefaultSettings()
	bl := lb.New(b.Context(), lb.Config{})
	bl.Update("file", []lb.PoolSpec{{Name: "web", Settings: set, Servers: []lb.Server{
		{ID: "a", Name: "a", Address: "127.0.0.1:1"}, {ID: "b", Name: "b", Address: "127.0.0.1:2"},
	}}})
	m.Attach(bl)
	pool := bl.Table().Pools["web"]
	backends := pool.Backends()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Request(pool, backends[i&1], 200, 1500*time.Microsecond)
			i++
		}
	})
}
