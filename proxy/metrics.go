package proxy

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-lb/shoal/lb"
)

// Metrics is Shoal's Prometheus instrumentation. It implements Observer for
// the data plane and has hooks for lb (BackendState, HealthCheck), discovery
// (DiscoveryEvent, DiscoveryError, DockerConnected) and config reloads
// (ConfigReload). Per-backend gauges (in-flight, state, effective weight) are
// read from the balancer's current table at scrape time, once NewAdmin (or
// Attach) told the metrics where the table is.
//
// The request path costs two sync.Map loads keyed by pointers, a counter
// increment and a histogram observation: no locks taken by Shoal, no string
// building and no allocations once a backend has been seen.
//
// Series of pools and backends that left the table are deleted, so that
// container churn does not grow the exposition without bound.
type Metrics struct {
	gatherer prometheus.Gatherer

	requests        *prometheus.CounterVec   // pool, backend, class
	duration        *prometheus.HistogramVec // pool
	retries         *prometheus.CounterVec   // pool
	health          *prometheus.CounterVec   // pool, result
	transitions     *prometheus.CounterVec   // pool, state
	discovery       *prometheus.CounterVec   // action
	discoveryErrors prometheus.Counter
	reloads         *prometheus.CounterVec // result
	docker          prometheus.Gauge

	tables atomic.Pointer[func() *lb.Table] // set by Attach; nil before

	backends sync.Map // *lb.Backend -> *backendSeries
	pools    sync.Map // *lb.Pool -> *poolSeries
	noPool   *poolSeries

	pruneMu    sync.Mutex
	lastPruned *lb.Table
	seenPools  map[string]struct{}    // pool label values ever used
	seenPairs  map[[2]string]struct{} // (pool, backend) label values ever used
}

// Status classes, the values of the class label of shoal_requests_total.
const numClasses = 6

var classNames = [numClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

func statusClass(status int) int {
	if status >= 100 && status < 600 {
		return status/100 - 1
	}
	return numClasses - 1
}

// counterRef boxes a counter so that it can sit in an atomic.Pointer.
type counterRef struct{ c prometheus.Counter }

// classCounters are the request counters of one (pool, backend) pair, one per
// status class, created on first use so that classes never seen make no
// series.
type classCounters struct {
	pool, backend string
	c             [numClasses]atomic.Pointer[counterRef]
}

func (cc *classCounters) inc(m *Metrics, class int) {
	if r := cc.c[class].Load(); r != nil {
		r.c.Inc()
		return
	}
	r := &counterRef{m.requests.WithLabelValues(cc.pool, cc.backend, classNames[class])}
	if !cc.c[class].CompareAndSwap(nil, r) {
		r = cc.c[class].Load()
	}
	r.c.Inc()
}

type backendSeries struct {
	counters classCounters
}

type poolSeries struct {
	duration  prometheus.Observer
	retries   prometheus.Counter
	noBackend classCounters // requests of the pool that got no backend (503)
}

// NewMetrics creates Shoal's metrics and registers them, with the Go runtime
// and process collectors, on reg. /metrics serves reg when it is also a
// prometheus.Gatherer (a *prometheus.Registry is), else the default gatherer.
// It panics if a Shoal metric is already registered on reg, like
// prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_requests_total",
			Help: "Proxied requests by pool, backend (container name or address; empty when none was picked) and status class of the response.",
		}, []string{"pool", "backend", "class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_request_duration_seconds",
			Help:    "Time from receiving a request to finishing its response, by pool (empty when no pool matched).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"pool"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_retries_total",
			Help: "Attempts that failed and were retried on another backend, by pool.",
		}, []string{"pool"}),
		health: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_health_checks_total",
			Help: "Active health checks by pool and result (ok or failed).",
		}, []string{"pool", "result"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_backend_transitions_total",
			Help: "Backend state transitions by pool and the state entered (starting, ready, draining, down).",
		}, []string{"pool", "state"}),
		discovery: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_discovery_events_total",
			Help: "Discovery events handled, by action (e.g. the Docker event's action: start, die, stop, health_status).",
		}, []string{"action"}),
		discoveryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_discovery_errors_total",
			Help: "Discovery errors: failed Docker calls, lost event streams, unreadable config files.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_config_reloads_total",
			Help: "Config file reloads by result (ok or failed).",
		}, []string{"result"}),
		docker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_docker_connected",
			Help: "1 while Shoal is connected to the Docker engine's event stream, else 0.",
		}),
		seenPools: map[string]struct{}{},
		seenPairs: map[[2]string]struct{}{},
	}
	m.noPool = &poolSeries{
		duration:  m.duration.WithLabelValues(""),
		retries:   m.retries.WithLabelValues(""),
		noBackend: classCounters{},
	}
	// Make the counters of results that are rare but alarming visible at 0.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")

	reg.MustRegister(m.requests, m.duration, m.retries, m.health, m.transitions,
		m.discovery, m.discoveryErrors, m.reloads, m.docker, backendCollector{m})
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		var are prometheus.AlreadyRegisteredError
		if err := reg.Register(c); err != nil && !errors.As(err, &are) {
			panic(err)
		}
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	} else {
		m.gatherer = prometheus.DefaultGatherer
	}
	return m
}

// Attach tells the metrics where the current routing table is, for the
// per-backend gauges and to delete series of backends that are gone.
// NewAdmin calls it with its balancer.
func (m *Metrics) Attach(src interface{ Table() *lb.Table }) {
	f := src.Table
	m.tables.Store(&f)
}

// Handler serves the Prometheus exposition of the registry given to
// NewMetrics.
func (m *Metrics) Handler() http.Handler {
	// Prune first: collectors run concurrently, so pruning from within one
	// would show gone series once more.
	g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		m.prune()
		return m.gatherer.Gather()
	})
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

var _ Observer = (*Metrics)(nil)

// Request counts a finished request. It does not allocate once the pool and
// backend have been seen.
func (m *Metrics) Request(pool *lb.Pool, b *lb.Backend, status int, d time.Duration) {
	ps := m.poolSeries(pool)
	ps.duration.Observe(d.Seconds())
	class := statusClass(status)
	if b == nil {
		ps.noBackend.inc(m, class)
		return
	}
	if v, ok := m.backends.Load(b); ok {
		v.(*backendSeries).counters.inc(m, class)
		return
	}
	m.newBackendSeries(pool, b).counters.inc(m, class)
}

// Retry counts an attempt that is retried on another backend.
func (m *Metrics) Retry(pool *lb.Pool) {
	m.poolSeries(pool).retries.Inc()
}

func (m *Metrics) poolSeries(p *lb.Pool) *poolSeries {
	if p == nil {
		return m.noPool
	}
	if v, ok := m.pools.Load(p); ok {
		return v.(*poolSeries)
	}
	// A pool object is new with every routing table: prune what the last
	// table change left behind before adding.
	m.prune()
	m.notePool(p.Name)
	ps := &poolSeries{
		duration:  m.duration.WithLabelValues(p.Name),
		retries:   m.retries.WithLabelValues(p.Name),
		noBackend: classCounters{pool: p.Name},
	}
	v, _ := m.pools.LoadOrStore(p, ps)
	return v.(*poolSeries)
}

func (m *Metrics) newBackendSeries(pool *lb.Pool, b *lb.Backend) *backendSeries {
	m.prune()
	name := b.Name()
	pn := b.Pool
	if pool != nil {
		pn = pool.Name
	}
	m.pruneMu.Lock()
	m.seenPairs[[2]string{pn, name}] = struct{}{}
	m.pruneMu.Unlock()
	bs := &backendSeries{counters: classCounters{pool: pn, backend: name}}
	v, _ := m.backends.LoadOrStore(b, bs)
	return v.(*backendSeries)
}

func (m *Metrics) notePool(name string) {
	m.pruneMu.Lock()
	m.seenPools[name] = struct{}{}
	m.pruneMu.Unlock()
}

// prune forgets cached series of backends and pools that are not in the
// current table and deletes their series, once per table.
func (m *Metrics) prune() {
	f := m.tables.Load()
	if f == nil {
		return
	}
	t := (*f)()
	m.pruneMu.Lock()
	defer m.pruneMu.Unlock()
	if t == m.lastPruned {
		return
	}
	m.lastPruned = t
	livePools := make(map[*lb.Pool]bool, len(t.Pools))
	liveBackends := map[*lb.Backend]bool{}
	livePoolNames := map[string]bool{"": true}
	livePairs := map[[2]string]bool{}
	for name, p := range t.Pools {
		livePools[p] = true
		livePoolNames[name] = true
		for _, b := range p.Backends() {
			liveBackends[b] = true
			livePairs[[2]string{name, b.Name()}] = true
		}
	}
	m.pools.Range(func(k, _ any) bool {
		if !livePools[k.(*lb.Pool)] {
			m.pools.Delete(k)
		}
		return true
	})
	m.backends.Range(func(k, v any) bool {
		b := k.(*lb.Backend)
		if !liveBackends[b] || v.(*backendSeries).counters.backend != b.Name() {
			m.backends.Delete(k)
		}
		return true
	})
	for pair := range m.seenPairs {
		if !livePairs[pair] {
			delete(m.seenPairs, pair)
			m.requests.DeletePartialMatch(prometheus.Labels{"pool": pair[0], "backend": pair[1]})
		}
	}
	for name := range m.seenPools {
		if !livePoolNames[name] {
			delete(m.seenPools, name)
			l := prometheus.Labels{"pool": name}
			m.requests.DeletePartialMatch(l)
			m.duration.DeletePartialMatch(l)
			m.retries.DeletePartialMatch(l)
			m.health.DeletePartialMatch(l)
			m.transitions.DeletePartialMatch(l)
		}
	}
}

// BackendState is lb.Config.OnState: it counts state transitions.
func (m *Metrics) BackendState(b *lb.Backend, from, to lb.State, reason string) {
	m.notePool(b.Pool)
	m.transitions.WithLabelValues(b.Pool, to.String()).Inc()
}

// HealthCheck is lb.Config.OnHealthCheck: it counts active check results.
func (m *Metrics) HealthCheck(b *lb.Backend, ok bool) {
	result := "failed"
	if ok {
		result = "ok"
	}
	m.notePool(b.Pool)
	m.health.WithLabelValues(b.Pool, result).Inc()
}

// DiscoveryEvent counts a discovery event by action, e.g. a Docker event's
// action ("start", "die") or "resync".
func (m *Metrics) DiscoveryEvent(action string) {
	m.discovery.WithLabelValues(action).Inc()
}

// DiscoveryError counts a discovery error.
func (m *Metrics) DiscoveryError() { m.discoveryErrors.Inc() }

// DockerConnected sets whether the Docker event stream is connected.
func (m *Metrics) DockerConnected(up bool) {
	if up {
		m.docker.Set(1)
	} else {
		m.docker.Set(0)
	}
}

// ConfigReload counts a config file reload by result.
func (m *Metrics) ConfigReload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
	} else {
		m.reloads.WithLabelValues("failed").Inc()
	}
}

// backendCollector reads the per-backend gauges from the current table at
// scrape time, so that the request path pays nothing for them.
type backendCollector struct{ m *Metrics }

var (
	descInFlight = prometheus.NewDesc("shoal_backend_in_flight",
		"Requests the backend is serving now.", []string{"pool", "backend"}, nil)
	descState = prometheus.NewDesc("shoal_backend_state",
		"Always 1; the state label is the backend's state: ready, slow-starting, backup, starting, draining or down.",
		[]string{"pool", "backend", "state"}, nil)
	descWeight = prometheus.NewDesc("shoal_backend_effective_weight",
		"The backend's weight after slow start.", []string{"pool", "backend"}, nil)
	descLatency = prometheus.NewDesc("shoal_backend_latency_seconds",
		"Moving average of the backend's response time (the one least_time uses); 0 before any request.",
		[]string{"pool", "backend"}, nil)
)

func (c backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descInFlight
	ch <- descState
	ch <- descWeight
	ch <- descLatency
}

func (c backendCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.tables.Load()
	if f == nil {
		return
	}
	c.m.prune()
	t := (*f)()
	now := time.Now().UnixNano()
	seen := map[[2]string]bool{}
	for name, p := range t.Pools {
		for _, b := range p.Backends() {
			bn := b.Name()
			k := [2]string{name, bn}
			if seen[k] {
				continue // two backends with one name would fail the whole scrape
			}
			seen[k] = true
			ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(b.InFlight()), name, bn)
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, 1, name, bn, backendState(b, now))
			ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(b.EffectiveWeight(now))/1000, name, bn)
			ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, b.Latency().Seconds(), name, bn)
		}
	}
}
