package lb

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// PoolSpec is what a discovery source says about one pool.
type PoolSpec struct {
	Name     string
	Settings Settings
	Servers  []Server
}

// Config configures a Balancer. Zero values take the documented defaults.
type Config struct {
	Log zerolog.Logger
	// DefaultPool receives requests that match no host or path rule when
	// several pools are catch-alls.
	DefaultPool string
	// Events receives discovery and health events; nil keeps the last 200.
	Events *EventLog
	// ProbeInterval is the period of the TCP readiness probe; default 50ms.
	ProbeInterval time.Duration
	// ProbeFastFor is how long the probe runs at ProbeInterval before it
	// slows to once a second and warns; default 60s.
	ProbeFastFor time.Duration
	// HealthClient runs active checks; nil uses a client without keep-alive.
	HealthClient *http.Client
	// OnState, if set, is called on every backend state transition, e.g. to
	// update metrics. It must not block.
	OnState func(b *Backend, from, to State, reason string)
	// OnHealthCheck, if set, is called with the result of every active check.
	OnHealthCheck func(b *Backend, ok bool)
	// PoolGrace keeps a pool whose last backend went away routable, empty,
	// for this long, so that its requests wait for the next backend (a
	// restart of every replica) instead of getting 404; default 30s.
	PoolGrace time.Duration
}

// Balancer owns the live backends of every pool and publishes routing
// snapshots. Discovery sources feed it with Update; the proxy reads Table.
type Balancer struct {
	cfg    Config
	log    zerolog.Logger
	events *EventLog
	ctx    context.Context

	mu      sync.Mutex
	sources map[string][]PoolSpec
	merged  []PoolSpec
	entries map[string]*entry
	drained map[string]time.Time // backend ID -> container start time of an operator's drain
	emptied map[string]emptied   // pools whose last backend went away, kept for PoolGrace

	table atomic.Pointer[Table] // never nil
}

type emptied struct {
	settings Settings
	until    time.Time
}

type entry struct {
	b      *Backend
	pool   string
	spec   Server
	set    Settings
	cancel context.CancelFunc
}

// New returns a balancer with an empty table. Health goroutines run under ctx
// and end when it is cancelled.
func New(ctx context.Context, cfg Config) *Balancer {
	if cfg.Events == nil {
		cfg.Events = NewEventLog(200)
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = 50 * time.Millisecond
	}
	if cfg.PoolGrace <= 0 {
		cfg.PoolGrace = 30 * time.Second
	}
	if cfg.ProbeFastFor <= 0 {
		cfg.ProbeFastFor = 60 * time.Second
	}
	if cfg.HealthClient == nil {
		cfg.HealthClient = &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	bl := &Balancer{
		cfg:     cfg,
		log:     cfg.Log.With().Str("component", "lb").Logger(),
		events:  cfg.Events,
		ctx:     ctx,
		sources: map[string][]PoolSpec{},
		entries: map[string]*entry{},
		drained: map[string]time.Time{},
		emptied: map[string]emptied{},
	}
	bl.table.Store(NewTable(map[string]*Pool{}, cfg.DefaultPool))
	return bl
}

// Table returns the current routing snapshot; never nil.
func (bl *Balancer) Table() *Table { return bl.table.Load() }

// Events returns the balancer's event log.
func (bl *Balancer) Events() *EventLog { return bl.events }

// Update replaces everything source knows. Pools are merged across sources
// by name; where two sources set a pool's settings, the "file" source wins.
// An update that changes nothing is dropped.
func (bl *Balancer) Update(source string, pools []PoolSpec) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	bl.sources[source] = pools
	merged := bl.merge()
	if reflect.DeepEqual(merged, bl.merged) {
		return
	}
	bl.merged = merged
	bl.rebuild()
}

// merge combines the sources, "file" first, then the others by name.
func (bl *Balancer) merge() []PoolSpec {
	names := make([]string, 0, len(bl.sources))
	for n := range bl.sources {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "file") != (names[j] == "file") {
			return names[i] == "file"
		}
		return names[i] < names[j]
	})
	byName := map[string]*PoolSpec{}
	seen := map[string]bool{}
	var order []string
	for _, src := range names {
		for _, ps := range bl.sources[src] {
			m, ok := byName[ps.Name]
			if !ok {
				m = &PoolSpec{Name: ps.Name, Settings: ps.Settings}
				byName[ps.Name] = m
				order = append(order, ps.Name)
			}
			for _, s := range ps.Servers {
				if seen[s.ID] {
					continue
				}
				seen[s.ID] = true
				m.Servers = append(m.Servers, s)
			}
		}
	}
	sort.Strings(order)
	out := make([]PoolSpec, 0, len(order))
	for _, n := range order {
		m := byName[n]
		sort.Slice(m.Servers, func(i, j int) bool { return m.Servers[i].ID < m.Servers[j].ID })
		out = append(out, *m)
	}
	return out
}

// rebuild reconciles live backends with bl.merged and publishes a new table.
func (bl *Balancer) rebuild() {
	keep := map[string]bool{}
	pools := map[string]*Pool{}
	for _, ps := range bl.merged {
		set := ps.Settings
		var members []*Backend
		for _, s := range ps.Servers {
			keep[s.ID] = true
			members = append(members, bl.reconcile(ps.Name, &set, s))
		}
		pools[ps.Name] = newPool(ps.Name, &set, members)
	}
	for id, e := range bl.entries {
		if !keep[id] {
			bl.remove(e, "gone from discovery")
		}
	}
	bl.keepEmptied(pools)
	t := NewTable(pools, bl.cfg.DefaultPool)
	if len(t.Unroutable) > 0 {
		bl.log.Warn().Strs("pools", t.Unroutable).
			Msg("several pools have neither shoal.host nor shoal.path and no --default-pool picks one; requests that match no other pool get 404")
	}
	bl.table.Store(t)
}

// keepEmptied adds, empty, the pools that lost their last backend less than
// PoolGrace ago, and schedules the rebuild that drops them.
func (bl *Balancer) keepEmptied(pools map[string]*Pool) {
	now := time.Now()
	for name, p := range bl.table.Load().Pools {
		if _, still := pools[name]; !still {
			if _, known := bl.emptied[name]; !known {
				bl.emptied[name] = emptied{settings: *p.Settings, until: now.Add(bl.cfg.PoolGrace)}
				time.AfterFunc(bl.cfg.PoolGrace, func() {
					bl.mu.Lock()
					defer bl.mu.Unlock()
					bl.rebuild()
				})
			}
		}
	}
	for name, e := range bl.emptied {
		if _, back := pools[name]; back || now.Add(10*time.Millisecond).After(e.until) {
			delete(bl.emptied, name)
			continue
		}
		set := e.settings
		pools[name] = newPool(name, &set, nil)
		pools[name].Emptied = true
	}
}

// reconcile returns the live backend for s, creating or updating it.
func (bl *Balancer) reconcile(pool string, set *Settings, s Server) *Backend {
	e, ok := bl.entries[s.ID]
	if ok && (e.pool != pool || e.spec.Address != s.Address || !reflect.DeepEqual(e.set.Health, set.Health)) {
		bl.remove(e, "address, pool or health check changed")
		ok = false
	}
	if ok && !e.spec.Started.Equal(s.Started) {
		// A restarted container is a new process: it goes through the
		// readiness path again, with fresh checks and connections.
		bl.remove(e, "container restarted")
		ok = false
	}
	if ok {
		if e.spec != s || !reflect.DeepEqual(e.set, *set) {
			e.spec, e.set = s, *set
			sv := s
			e.b.spec.Store(&sv)
			e.b.setSettings(set)
			if started, drained := bl.drained[s.ID]; drained && !started.Equal(s.Started) {
				delete(bl.drained, s.ID) // restarted: the operator's drain ends
				e.b.manualDrain.Store(false)
			}
			e.b.update()
		} else {
			e.b.setSettings(set)
		}
		return e.b
	}
	b := newBackend(s, pool, set, bl.stateChanged)
	if started, drained := bl.drained[s.ID]; drained {
		if started.Equal(s.Started) {
			b.manualDrain.Store(true)
		} else {
			delete(bl.drained, s.ID)
		}
	}
	ctx, cancel := context.WithCancel(bl.ctx)
	e = &entry{b: b, pool: pool, spec: s, set: *set, cancel: cancel}
	bl.entries[s.ID] = e
	b.update()
	bl.events.Add(Event{Kind: "discovered", Pool: pool, Backend: s.ID, Name: s.Name, Message: "discovered at " + s.Address})
	bl.log.Info().Str("pool", pool).Str("backend", s.Name).Str("address", s.Address).Msg("backend discovered")
	go bl.watch(ctx, b)
	return b
}

func (bl *Balancer) remove(e *entry, why string) {
	e.cancel()
	delete(bl.entries, e.b.ID)
	bl.events.Add(Event{Kind: "removed", Pool: e.pool, Backend: e.b.ID, Name: e.spec.Name, Message: "removed: " + why})
	bl.log.Info().Str("pool", e.pool).Str("backend", e.spec.Name).Str("reason", why).Msg("backend removed")
}

func (bl *Balancer) stateChanged(b *Backend, from, to State, reason string) {
	name := b.Name()
	bl.events.Add(Event{Kind: "state", Pool: b.Pool, Backend: b.ID, Name: name, Message: from.String() + " -> " + to.String() + ": " + reason})
	ev := bl.log.Info()
	if to == StateDown {
		ev = bl.log.Warn()
	}
	ev.Str("pool", b.Pool).Str("backend", name).Str("from", from.String()).Str("to", to.String()).Str("reason", reason).Msg("backend state changed")
	if bl.cfg.OnState != nil {
		bl.cfg.OnState(b, from, to, reason)
	}
}

// Drain takes a backend out of rotation (on=true) or puts it back, on an
// operator's request. The drain survives rediscovery of the same container
// and ends when it restarts.
func (bl *Balancer) Drain(pool, id string, on bool) error {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	e, ok := bl.entries[id]
	if !ok || e.pool != pool {
		return fmt.Errorf("pool %q has no backend %q", pool, id)
	}
	if on {
		bl.drained[id] = e.spec.Started
	} else {
		delete(bl.drained, id)
	}
	e.b.SetManualDrain(on)
	what := "undrained by operator"
	if on {
		what = "drained by operator"
	}
	bl.events.Add(Event{Kind: "drain", Pool: pool, Backend: id, Name: e.spec.Name, Message: what})
	return nil
}

// dial is the readiness probe's dialer.
var dialer = net.Dialer{Timeout: 500 * time.Millisecond}

// SetDefaultPool changes the pool that takes unmatched requests when several
// pools are catch-alls, and republishes the table.
func (bl *Balancer) SetDefaultPool(name string) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if bl.cfg.DefaultPool == name {
		return
	}
	bl.cfg.DefaultPool = name
	bl.rebuild()
}
