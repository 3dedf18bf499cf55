package lb

import (
	"strconv"
	"sync/atomic"
	"time"
)

// Server is what a discovery source knows about one backend: where it is and
// how it should be weighted. It is plain data, compared to drop no-op updates.
type Server struct {
	ID      string    // stable identity: container ID, or "file:" + address for static servers
	Name    string    // container name, or the address for static servers
	Address string    // host:port the proxy dials
	Weight  int       // 1..1000; 0 is read as 1
	Backup  bool      // receives traffic only when no primary is available
	Source  string    // "docker" or "file"
	Created time.Time // container creation time; ties in label votes go to the oldest
	Started time.Time // container start time; a restart ends an operator's drain

	// DockerHealth is the container's HEALTHCHECK status: "" when it has
	// none, else "starting", "healthy" or "unhealthy". Only "" and "healthy"
	// let the backend become ready.
	DockerHealth string
	// Stopping is set once Docker said the container is being stopped,
	// killed with SIGTERM/SIGINT, or paused: the backend drains.
	Stopping bool
}

// State is a backend's place in rotation.
type State uint32

const (
	StateStarting State = iota // discovered, not yet ready for traffic
	StateReady                 // in rotation
	StateDraining              // finishing in-flight requests, gets no new ones
	StateDown                  // failed a health check
)

func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateReady:
		return "ready"
	case StateDraining:
		return "draining"
	case StateDown:
		return "down"
	}
	return "unknown"
}

// Backend is the live state of one server. It is shared by every routing
// snapshot that contains the server, so counters survive rebuilds. All
// fields are atomics; a Backend must not be copied.
type Backend struct {
	ID   string
	Pool string

	spec     atomic.Pointer[Server]
	settings atomic.Pointer[Settings]
	maxConns atomic.Int64 // settings' MaxConns, kept here so that Available reads one word

	// Readiness inputs, each owned by one writer.
	portOpen    atomic.Bool // the TCP probe connected at least once
	activeDown  atomic.Bool // the active check says down
	activeReady atomic.Bool // the first active check passed (or there is none)
	manualDrain atomic.Bool // drained by an operator through the admin API

	state     atomic.Uint32 // State, derived by update
	reason    atomic.Pointer[string]
	since     atomic.Int64 // unix nanos of the last state change
	readyAt   atomic.Int64 // unix nanos when the backend last became ready, for slow start
	downUntil atomic.Int64 // unix nanos until which passive health keeps it out

	failWindow atomic.Int64 // unix nanos when the current passive failure window began
	failCount  atomic.Int32

	inflight atomic.Int64
	requests atomic.Uint64
	failures atomic.Uint64
	ewma     atomic.Int64 // moving average of response time in nanos, 0 = no sample

	// transport is the data plane's connection pool for this backend,
	// opaque to lb. It lives and dies with the backend, so a new container
	// that reuses an old one's address never inherits its connections.
	transport atomic.Value

	// onChange is called after every real state transition.
	onChange func(b *Backend, from, to State, reason string)
}

func newBackend(s Server, pool string, set *Settings, onChange func(*Backend, State, State, string)) *Backend {
	b := &Backend{ID: s.ID, Pool: pool, onChange: onChange}
	sv := s
	b.spec.Store(&sv)
	b.setSettings(set)
	r := "discovered"
	b.reason.Store(&r)
	b.since.Store(time.Now().UnixNano())
	if set.Health.Path == "" {
		b.activeReady.Store(true)
	}
	return b
}

func (b *Backend) setSettings(set *Settings) {
	b.settings.Store(set)
	b.maxConns.Store(int64(set.MaxConns))
}

// Transport returns what SetTransport stored, or nil.
func (b *Backend) Transport() any { return b.transport.Load() }

// SetTransport stores the data plane's per-backend state if none is stored
// yet, and returns the stored value.
func (b *Backend) SetTransport(t any) any {
	if b.transport.CompareAndSwap(nil, t) {
		return t
	}
	return b.transport.Load()
}

// Server returns the current description of the backend.
func (b *Backend) Server() Server { return *b.spec.Load() }

// Address is the host:port to dial.
func (b *Backend) Address() string { return b.spec.Load().Address }

// Name is the container name or static address.
func (b *Backend) Name() string { return b.spec.Load().Name }

// Weight is the configured weight, at least 1.
func (b *Backend) Weight() int {
	w := b.spec.Load().Weight
	if w < 1 {
		return 1
	}
	return w
}

// Backup reports whether the backend only serves when no primary can.
func (b *Backend) Backup() bool { return b.spec.Load().Backup }

// State is the backend's current state.
func (b *Backend) State() State { return State(b.state.Load()) }

// Reason says why the backend is in its state, and Since when.
func (b *Backend) Reason() string { return *b.reason.Load() }

// Since is when the backend entered its current state.
func (b *Backend) Since() time.Time { return time.Unix(0, b.since.Load()) }

// InFlight is the number of requests the backend is serving now.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Requests is the number of requests sent to the backend.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Failures is the number of failed attempts against the backend.
func (b *Backend) Failures() uint64 { return b.failures.Load() }

// Latency is the moving average of the response time, 0 before any sample.
func (b *Backend) Latency() time.Duration { return time.Duration(b.ewma.Load()) }

// ManuallyDrained reports whether an operator drained the backend.
func (b *Backend) ManuallyDrained() bool { return b.manualDrain.Load() }

// Available reports whether a new request may be sent to the backend now.
// now is unix nanos; pass the same value across one selection.
func (b *Backend) Available(now int64) bool {
	if State(b.state.Load()) != StateReady {
		return false
	}
	if b.downUntil.Load() > now {
		return false
	}
	if m := b.maxConns.Load(); m > 0 && b.inflight.Load() >= m {
		return false
	}
	return true
}

// relaxedAvailable is Available under a relaxation: passive health ignored,
// and with RelaxDraining a stopping container accepted.
func (b *Backend) relaxedAvailable(r Relax) bool {
	if m := b.maxConns.Load(); m > 0 && b.inflight.Load() >= m {
		return false
	}
	switch State(b.state.Load()) {
	case StateReady:
		return r&RelaxPassive != 0
	case StateDraining:
		return r&RelaxDraining != 0 && !b.manualDrain.Load()
	}
	return false
}

// PassiveDown reports whether passive health keeps the backend out at now.
func (b *Backend) PassiveDown(now int64) bool { return b.downUntil.Load() > now }

// EffectiveWeight is the weight after slow start, scaled by 1000 so that a
// weight of 1 can ramp too. A backend that is not slow-starting returns
// Weight()*1000.
func (b *Backend) EffectiveWeight(now int64) int {
	w := b.Weight() * 1000
	ss := b.settings.Load().SlowStart
	if ss <= 0 {
		return w
	}
	el := now - b.readyAt.Load()
	if el >= int64(ss) || el < 0 {
		return w
	}
	e := int(int64(w) * el / int64(ss))
	if min := w / 10; e < min { // start at a tenth, never at zero
		e = min
	}
	if e < 1 {
		e = 1
	}
	return e
}

// SlowStarting reports whether the backend is still ramping its weight.
func (b *Backend) SlowStarting(now int64) bool {
	ss := b.settings.Load().SlowStart
	return ss > 0 && State(b.state.Load()) == StateReady && now-b.readyAt.Load() < int64(ss)
}

// Acquire counts a request that is being sent to the backend.
func (b *Backend) Acquire() {
	b.inflight.Add(1)
	b.requests.Add(1)
}

// Release ends a request started with Acquire. d is the measured response
// time (time to first byte or to last byte, as the pool measures it); 0
// means no sample.
func (b *Backend) Release(d time.Duration) {
	b.inflight.Add(-1)
	if d <= 0 {
		return
	}
	// EWMA with alpha = 1/8, lock-free: a lost update under contention only
	// drops one sample.
	old := b.ewma.Load()
	var n int64
	if old == 0 {
		n = int64(d)
	} else {
		n = old + (int64(d)-old)/8
	}
	b.ewma.CompareAndSwap(old, n)
}

// ReportFailure records a failed attempt for passive health. It returns true
// when this failure took the backend out of rotation.
func (b *Backend) ReportFailure(now time.Time) bool {
	b.failures.Add(1)
	set := b.settings.Load()
	if set.MaxFails <= 0 {
		return false
	}
	n := now.UnixNano()
	start := b.failWindow.Load()
	if n-start > int64(set.FailTimeout) {
		if b.failWindow.CompareAndSwap(start, n) {
			b.failCount.Store(0)
		}
	}
	if int(b.failCount.Add(1)) < set.MaxFails {
		return false
	}
	b.failCount.Store(0)
	until := n + int64(set.FailTimeout)
	prev := b.downUntil.Load()
	if prev > n {
		return false // already out
	}
	if !b.downUntil.CompareAndSwap(prev, until) {
		return false
	}
	if b.onChange != nil {
		b.onChange(b, b.State(), StateDown, "passive: "+strconv.Itoa(set.MaxFails)+" failure(s) within "+set.FailTimeout.String())
	}
	return true
}

// SetManualDrain drains or undrains the backend on an operator's request.
func (b *Backend) SetManualDrain(on bool) {
	b.manualDrain.Store(on)
	b.update()
}

// update derives the state from the readiness inputs and fires onChange on a
// real transition.
func (b *Backend) update() {
	sp := b.spec.Load()
	var to State
	var reason string
	switch {
	case b.manualDrain.Load():
		to, reason = StateDraining, "drained by operator"
	case sp.Stopping:
		to, reason = StateDraining, "container is stopping"
	case !b.portOpen.Load():
		to, reason = StateStarting, "waiting for the port to accept connections"
	case sp.DockerHealth == "starting":
		to, reason = StateStarting, "docker health: starting"
	case sp.DockerHealth == "unhealthy":
		to, reason = StateDown, "docker health: unhealthy"
	case b.activeDown.Load():
		to, reason = StateDown, "active health check failing"
	case !b.activeReady.Load():
		to, reason = StateStarting, "waiting for the first active health check"
	default:
		to, reason = StateReady, "ready"
	}
	for {
		from := State(b.state.Load())
		if from == to {
			return
		}
		if b.state.CompareAndSwap(uint32(from), uint32(to)) {
			now := time.Now().UnixNano()
			b.reason.Store(&reason)
			b.since.Store(now)
			if to == StateReady {
				b.readyAt.Store(now)
			}
			if b.onChange != nil {
				b.onChange(b, from, to, reason)
			}
			return
		}
	}
}
