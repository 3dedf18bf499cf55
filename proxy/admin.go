package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/shoal-lb/shoal/lb"
)

//go:embed dashboard.html
var dashboardHTML []byte

// AdminConfig configures the admin handler.
type AdminConfig struct {
	// Balancer is the balancer whose pools are shown and drained. Required.
	Balancer *lb.Balancer
	// Token, when set, is required as "Authorization: Bearer TOKEN" on every
	// endpoint except /healthz and the dashboard page itself (a static page
	// that holds no data and asks for the token). "" disables auth.
	Token string
	// Metrics is served on /metrics; nil makes /metrics answer 404. NewAdmin
	// attaches it to Balancer so that per-backend gauges can be scraped.
	Metrics *Metrics
	// Log receives the operator's actions (drain, undrain).
	Log zerolog.Logger
	// Version is reported by /api/pools and shown on the dashboard.
	Version string
	// Heartbeat is the period of the comment lines that keep an idle event
	// stream open through proxies; default 15s.
	Heartbeat time.Duration
}

// Admin is the admin API: status, events, drain, metrics and the dashboard.
// Create it with NewAdmin and serve it on its own listener (--admin).
type Admin struct {
	cfg       AdminConfig
	bl        *lb.Balancer
	log       zerolog.Logger
	tokenHash [sha256.Size]byte
	mux       *http.ServeMux
	handler   http.Handler
}

// maxEvents is how many past events /api/events returns.
const maxEvents = 200

// NewAdmin returns the admin handler.
func NewAdmin(cfg AdminConfig) *Admin {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	a := &Admin{
		cfg: cfg,
		bl:  cfg.Balancer,
		log: cfg.Log.With().Str("component", "admin").Logger(),
		mux: http.NewServeMux(),
	}
	if cfg.Token != "" {
		a.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}
	if cfg.Metrics != nil {
		cfg.Metrics.Attach(cfg.Balancer)
	}
	m := a.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok"))
	})
	m.HandleFunc("GET /{$}", a.dashboard)
	m.HandleFunc("GET /api/pools", a.pools)
	m.HandleFunc("GET /api/events", a.events)
	m.HandleFunc("POST /api/pools/{pool}/backends/{id}/drain", a.drain(true))
	m.HandleFunc("POST /api/pools/{pool}/backends/{id}/undrain", a.drain(false))
	if cfg.Metrics != nil {
		m.Handle("GET /metrics", cfg.Metrics.Handler())
	} else {
		m.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, "metrics are not enabled in this admin API")
		})
	}
	// Known paths with another method get 405 with the allowed one; anything
	// else a 404 that lists the endpoints.
	for path, allow := range map[string]string{
		"/healthz":                              "GET, HEAD",
		"/{$}":                                  "GET, HEAD",
		"/api/pools":                            "GET, HEAD",
		"/api/events":                           "GET, HEAD",
		"/metrics":                              "GET, HEAD",
		"/api/pools/{pool}/backends/{id}/drain": "POST",
		"/api/pools/{pool}/backends/{id}/undrain": "POST",
	} {
		m.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed; use %s", r.Method, r.URL.Path, allow))
		})
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no admin endpoint %s %s; there are GET /healthz, GET /api/pools, GET /api/events[?follow=1], "+
			"POST /api/pools/{pool}/backends/{id}/drain and /undrain, GET /metrics and the dashboard at GET /", r.Method, r.URL.Path))
	})
	// Browsers' cross-site POSTs (CSRF against a token-less admin API on
	// loopback) are refused; curl and shoal status send no Origin and pass.
	a.handler = http.NewCrossOriginProtection().Handler(m)
	return a
}

// ServeHTTP checks the token, then serves the endpoint.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Token != "" && r.URL.Path != "/healthz" && r.URL.Path != "/" {
		if msg := a.checkToken(r); msg != "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal admin"`)
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
	}
	a.handler.ServeHTTP(w, r)
}

// checkToken returns "" when r carries the admin token, else why not. The
// comparison is of SHA-256 sums in constant time, so neither the token nor
// its length leaks through timing.
func (a *Admin) checkToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "unauthorized: this admin API requires the header \"Authorization: Bearer <token>\" with the token given to shoal by --admin-token or SHOAL_ADMIN_TOKEN"
	}
	scheme, tok, _ := strings.Cut(h, " ")
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], a.tokenHash[:]) != 1 {
		return "unauthorized: the admin token in the Authorization header is wrong (expected \"Bearer <token>\" with shoal's --admin-token)"
	}
	return ""
}

func (a *Admin) dashboard(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.Write(dashboardHTML)
}

// StatusReport is the body of GET /api/pools.
type StatusReport struct {
	Version string       `json:"version,omitempty"`
	Time    time.Time    `json:"time"`
	Pools   []PoolStatus `json:"pools"`
}

// PoolStatus is one pool of a StatusReport.
type PoolStatus struct {
	Name     string          `json:"name"`
	Method   string          `json:"method"`
	Settings PoolSettings    `json:"settings"`
	Backends []BackendStatus `json:"backends"`
}

// PoolSettings are the pool's settings that are set, for people: durations
// as strings, and the settings of features that are off left out.
type PoolSettings struct {
	Method           string   `json:"method"`
	HashKey          string   `json:"hash_key,omitempty"`
	HashConsistent   *bool    `json:"hash_consistent,omitempty"`
	BalanceFactor    float64  `json:"balance_factor,omitempty"`
	LeastTimeMeasure string   `json:"least_time_measure,omitempty"`
	RandomChoices    int      `json:"random_choices,omitempty"`
	Hosts            []string `json:"hosts,omitempty"`
	Path             string   `json:"path,omitempty"`
	HealthPath       string   `json:"health_path,omitempty"`
	HealthInterval   string   `json:"health_interval,omitempty"`
	HealthTimeout    string   `json:"health_timeout,omitempty"`
	HealthStatus     string   `json:"health_status,omitempty"`
	HealthFails      int      `json:"health_fails,omitempty"`
	HealthPasses     int      `json:"health_passes,omitempty"`
	MaxFails         int      `json:"max_fails"`
	FailTimeout      string   `json:"fail_timeout,omitempty"`
	FailOn5xx        bool     `json:"fail_on_5xx,omitempty"`
	Retries          string   `json:"retries"` // a number, or "auto" (pool size - 1, at most 3)
	RetryTimeout     string   `json:"retry_timeout,omitempty"`
	SlowStart        string   `json:"slow_start,omitempty"`
	MaxConns         int      `json:"max_conns,omitempty"`
	Queue            *int     `json:"queue,omitempty"`
	QueueTimeout     string   `json:"queue_timeout,omitempty"`
}

// BackendStatus is one backend of a PoolStatus.
type BackendStatus struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	Address         string    `json:"address"`
	Weight          int       `json:"weight"`
	EffectiveWeight float64   `json:"effective_weight"` // after slow start
	Backup          bool      `json:"backup"`
	State           string    `json:"state"`   // ready, slow-starting, backup, starting, draining, down
	Drained         bool      `json:"drained"` // drained by an operator (the dashboard offers undrain)
	Reason          string    `json:"reason"`
	Since           time.Time `json:"since"`
	SinceSeconds    float64   `json:"since_seconds"`
	InFlight        int64     `json:"in_flight"`
	Requests        uint64    `json:"requests"`
	Failures        uint64    `json:"failures"`
	LatencyMS       float64   `json:"latency_ms"` // moving average; 0 before any request
}

// Report builds the status of every pool, sorted by name.
func (a *Admin) Report() StatusReport {
	t := a.bl.Table()
	now := time.Now()
	rep := StatusReport{Version: a.cfg.Version, Time: now.UTC(), Pools: make([]PoolStatus, 0, len(t.Pools))}
	for _, p := range t.Pools {
		ps := PoolStatus{Name: p.Name, Method: p.Settings.Method, Settings: poolSettings(p.Settings), Backends: []BackendStatus{}}
		for _, b := range p.Backends() {
			ps.Backends = append(ps.Backends, backendStatus(p, b, now))
		}
		sort.SliceStable(ps.Backends, func(i, j int) bool {
			x, y := ps.Backends[i], ps.Backends[j]
			if x.Backup != y.Backup {
				return !x.Backup
			}
			return x.Name < y.Name
		})
		rep.Pools = append(rep.Pools, ps)
	}
	sort.Slice(rep.Pools, func(i, j int) bool { return rep.Pools[i].Name < rep.Pools[j].Name })
	return rep
}

func (a *Admin) pools(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.Report())
}

// backendState is the state shown to people and in shoal_backend_state:
// lb's state refined by passive health, slow start and backup.
func backendState(b *lb.Backend, now int64) string {
	switch st := b.State(); st {
	case lb.StateReady:
		switch {
		case b.PassiveDown(now):
			return "down"
		case b.Backup():
			return "backup"
		case b.SlowStarting(now):
			return "slow-starting"
		}
		return "ready"
	default:
		return st.String()
	}
}

func backendStatus(p *lb.Pool, b *lb.Backend, now time.Time) BackendStatus {
	n := now.UnixNano()
	state := backendState(b, n)
	reason := b.Reason()
	since := b.Since()
	switch {
	case state == "down" && b.State() == lb.StateReady:
		reason = "passive health: " + strconv.Itoa(p.Settings.MaxFails) + " failed request(s) within " + p.Settings.FailTimeout.String()
	case state == "slow-starting":
		reason = fmt.Sprintf("slow start: weight ramping to %d over %s", b.Weight(), p.Settings.SlowStart)
	}
	return BackendStatus{
		ID:              b.ID,
		Name:            b.Name(),
		Address:         b.Address(),
		Weight:          b.Weight(),
		EffectiveWeight: float64(b.EffectiveWeight(n)) / 1000,
		Backup:          b.Backup(),
		State:           state,
		Drained:         b.ManuallyDrained(),
		Reason:          reason,
		Since:           since.UTC(),
		SinceSeconds:    round3(now.Sub(since).Seconds()),
		InFlight:        b.InFlight(),
		Requests:        b.Requests(),
		Failures:        b.Failures(),
		LatencyMS:       round3(float64(b.Latency()) / float64(time.Millisecond)),
	}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func poolSettings(s *lb.Settings) PoolSettings {
	ps := PoolSettings{
		Method:   s.Method,
		Hosts:    s.Hosts,
		Path:     s.Path,
		MaxFails: s.MaxFails,
		Retries:  "auto",
	}
	dur := func(d time.Duration) string {
		if d <= 0 {
			return ""
		}
		return d.String()
	}
	switch s.Method {
	case lb.MethodHash:
		ps.HashKey = s.HashKey
		c := s.HashConsistent
		ps.HashConsistent = &c
		ps.BalanceFactor = s.BalanceFactor
	case lb.MethodLeastTime:
		ps.LeastTimeMeasure = s.LeastTimeMeasure
	case lb.MethodRandom:
		ps.RandomChoices = s.RandomChoices
	}
	if h := s.Health; h.Path != "" {
		ps.HealthPath = h.Path
		ps.HealthInterval = dur(h.Interval)
		ps.HealthTimeout = dur(h.Timeout)
		ps.HealthStatus = strconv.Itoa(h.StatusLo) + "-" + strconv.Itoa(h.StatusHi)
		ps.HealthFails = h.Fails
		ps.HealthPasses = h.Passes
	}
	if s.MaxFails > 0 {
		ps.FailTimeout = dur(s.FailTimeout)
		ps.FailOn5xx = s.FailOn5xx
	}
	if s.Retries >= 0 {
		ps.Retries = strconv.Itoa(s.Retries)
	}
	if s.Retries != 0 {
		ps.RetryTimeout = dur(s.RetryTimeout)
	}
	ps.SlowStart = dur(s.SlowStart)
	if s.MaxConns > 0 {
		ps.MaxConns = s.MaxConns
		q := s.Queue
		ps.Queue = &q
		ps.QueueTimeout = dur(s.QueueTimeout)
	}
	return ps
}

func (a *Admin) events(w http.ResponseWriter, r *http.Request) {
	log := a.bl.Events()
	if f := r.URL.Query().Get("follow"); f == "" || f == "0" || strings.EqualFold(f, "false") {
		ev := log.Recent()
		if len(ev) > maxEvents {
			ev = ev[len(ev)-maxEvents:]
		}
		writeJSON(w, http.StatusOK, struct {
			Events []lb.Event `json:"events"`
		}{ev})
		return
	}
	a.follow(w, r, log)
}

// follow streams events as server-sent events: the recent ones first, then
// each new one as it happens, with a comment line every Heartbeat. It ends
// when the client goes away.
func (a *Admin) follow(w http.ResponseWriter, r *http.Request, log *lb.EventLog) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's WriteTimeout

	// Subscribe before reading the past so that nothing falls in between;
	// what arrives in both is sent once.
	ch, cancel := log.Subscribe()
	defer cancel()
	recent := log.Recent()
	if len(recent) > maxEvents {
		recent = recent[len(recent)-maxEvents:]
	}
	sent := make(map[lb.Event]struct{}, len(recent))

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf []byte
	send := func(e lb.Event) error {
		j, err := json.Marshal(e)
		if err != nil {
			return err
		}
		buf = append(append(append(buf[:0], "data: "...), j...), "\n\n"...)
		_, err = w.Write(buf)
		return err
	}
	for _, e := range recent {
		sent[e] = struct{}{}
		if send(e) != nil {
			return
		}
	}
	if _, err := w.Write([]byte(": connected\n\n")); err != nil || rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(a.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case e := <-ch:
			if _, dup := sent[e]; dup {
				delete(sent, e)
				continue
			}
			if send(e) != nil || rc.Flush() != nil {
				return
			}
		case <-tick.C:
			if _, err := w.Write([]byte(": heartbeat\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// drain handles POST .../drain (on) and .../undrain (off). {id} is the
// backend's ID or its name.
func (a *Admin) drain(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pool, id := r.PathValue("pool"), r.PathValue("id")
		p := a.bl.Table().Pools[pool]
		if p == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no pool %q; GET /api/pools lists the pools", pool))
			return
		}
		var b *lb.Backend
		for _, c := range p.Backends() {
			if c.ID == id {
				b = c
				break
			}
		}
		if b == nil {
			for _, c := range p.Backends() {
				if c.Name() == id {
					b = c
					break
				}
			}
		}
		if b == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("pool %q has no backend with id or name %q; GET /api/pools lists the backends", pool, id))
			return
		}
		if err := a.bl.Drain(pool, b.ID, on); err != nil {
			writeError(w, http.StatusNotFound, err.Error()+" (it was removed meanwhile)")
			return
		}
		what := "undrain"
		if on {
			what = "drain"
		}
		a.log.Info().Str("pool", pool).Str("backend", b.Name()).Str("id", b.ID).Str("action", what).
			Str("remote", r.RemoteAddr).Msg("operator request")
		writeJSON(w, http.StatusOK, backendStatus(p, b, time.Now()))
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}
