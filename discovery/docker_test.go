package discovery

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/errdefs"
	"github.com/rs/zerolog"

	"github.com/shoal-lb/shoal/lb"
)

// These tests use a fake engine for what a real one cannot do on demand: an
// event stream that is silent but dead, events that never arrive, an engine
// that stops answering, an inspect that is slow. What users rely on is
// tested against a real engine in cmd/shoal's end-to-end and fault tests.

// fakeDocker is a scripted DockerAPI. Containers are keyed by ID; each
// Events call opens a new stream that the test feeds through send.
type fakeDocker struct {
	mu         sync.Mutex
	containers map[string]container.InspectResponse
	pingErr    error
	streams    []chan events.Message
	errChans   []chan error
	// inspectGate, if set, blocks ContainerInspect until it is closed.
	inspectGate chan struct{}
	inspects    int
	pings       int
}

func newFakeDocker() *fakeDocker {
	return &fakeDocker{containers: map[string]container.InspectResponse{}}
}

var _ DockerAPI = (*fakeDocker)(nil)

// put adds or replaces a running backend of pool "app" on network "net".
func (f *fakeDocker) put(id, ip string, mods ...func(*container.InspectResponse)) {
	r := container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID:      id,
			Name:    "/" + id,
			Created: "2026-01-01T00:00:00Z",
			State:   &container.State{Running: true, StartedAt: "2026-01-01T00:00:01Z"},
		},
		Config: &container.Config{Labels: map[string]string{"shoal.enable": "true", "shoal.port": "8000", "shoal.pool": "app"}},
		NetworkSettings: &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
			"net": {IPAddress: ip},
		}},
	}
	for _, m := range mods {
		m(&r)
	}
	f.mu.Lock()
	f.containers[id] = r
	f.mu.Unlock()
}

func (f *fakeDocker) drop(id string) {
	f.mu.Lock()
	delete(f.containers, id)
	f.mu.Unlock()
}

func (f *fakeDocker) setPing(err error) {
	f.mu.Lock()
	f.pingErr = err
	f.mu.Unlock()
}

// sessions is the number of event streams opened so far.
func (f *fakeDocker) sessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

// send delivers m on the newest stream.
func (f *fakeDocker) send(m events.Message) {
	f.mu.Lock()
	ch := f.streams[len(f.streams)-1]
	f.mu.Unlock()
	ch <- m
}

// breakStream ends the newest stream with err.
func (f *fakeDocker) breakStream(err error) {
	f.mu.Lock()
	ch := f.errChans[len(f.errChans)-1]
	f.mu.Unlock()
	ch <- err
}

func (f *fakeDocker) ContainerList(ctx context.Context, _ container.ListOptions) ([]container.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pingErr != nil {
		return nil, f.pingErr
	}
	var out []container.Summary
	for id := range f.containers {
		out = append(out, container.Summary{ID: id})
	}
	return out, nil
}

func (f *fakeDocker) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	f.mu.Lock()
	gate := f.inspectGate
	f.inspects++
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return container.InspectResponse{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.containers[id]
	if !ok {
		return r, errdefs.NotFound(errors.New("no such container: " + id))
	}
	return r, nil
}

func (f *fakeDocker) Events(ctx context.Context, _ events.ListOptions) (<-chan events.Message, <-chan error) {
	msgs := make(chan events.Message, 16)
	errs := make(chan error, 1)
	f.mu.Lock()
	f.streams = append(f.streams, msgs)
	f.errChans = append(f.errChans, errs)
	f.mu.Unlock()
	return msgs, errs
}

func (f *fakeDocker) NetworkList(ctx context.Context, _ network.ListOptions) ([]network.Summary, error) {
	return []network.Summary{{Name: "net"}}, nil
}

func (f *fakeDocker) pingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pings
}

func (f *fakeDocker) Ping(ctx context.Context) (types.Ping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings++
	return types.Ping{}, f.pingErr
}

// poolSink keeps every update discovery publishes.
type poolSink struct {
	mu      sync.Mutex
	updates [][]lb.PoolSpec
}

func (s *poolSink) Update(source string, pools []lb.PoolSpec) {
	s.mu.Lock()
	s.updates = append(s.updates, pools)
	s.mu.Unlock()
}

// servers is the last update's servers of pool "app", by ID.
func (s *poolSink) servers() map[string]lb.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]lb.Server{}
	if len(s.updates) == 0 {
		return out
	}
	for _, p := range s.updates[len(s.updates)-1] {
		for _, sv := range p.Servers {
			out[sv.ID] = sv
		}
	}
	return out
}

func (s *poolSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.updates)
}

func within(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: still waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// runDocker starts discovery against f with fast timers and stops it in
// cleanup, checking that Run returns.
func runDocker(t *testing.T, f *fakeDocker, mod ...func(*DockerConfig)) (*poolSink, *lb.EventLog) {
	t.Helper()
	sink := &poolSink{}
	ev := lb.NewEventLog(100)
	cfg := DockerConfig{
		API: f, Sink: sink, Log: zerolog.Nop(), Events: ev, Network: "net",
		Resync: time.Hour, Watchdog: time.Hour,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	d := NewDocker(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Docker.Run did not return after its context ended")
		}
	})
	return sink, ev
}

func containerEvent(action, id string, attrs ...string) events.Message {
	a := map[string]string{}
	for i := 0; i+1 < len(attrs); i += 2 {
		a[attrs[i]] = attrs[i+1]
	}
	return events.Message{Type: events.ContainerEventType, Action: events.Action(action), Actor: events.Actor{ID: id, Attributes: a}}
}

// outage reports whether discovery recorded losing the engine.
func outage(ev *lb.EventLog) bool {
	for _, e := range ev.Recent() {
		if e.Kind == "docker" && e.Message != "connected to the engine" {
			return true
		}
	}
	return false
}

func TestDockerWatchdogReconnectsSilentStream(t *testing.T) {
	f := newFakeDocker()
	f.put("c1", "10.0.0.2")
	sink, ev := runDocker(t, f, func(c *DockerConfig) { c.Watchdog = 10 * time.Millisecond })
	within(t, 2*time.Second, "the first sync", func() bool { return len(sink.servers()) == 1 })
	n := f.sessions()
	// The stream stays open but says nothing, and the engine stops
	// answering: only the watchdog can tell.
	f.setPing(errors.New("engine gone"))
	within(t, 2*time.Second, "the watchdog to notice", func() bool { return outage(ev) })
	f.setPing(nil)
	within(t, 2*time.Second, "a new event stream after the engine came back", func() bool { return f.sessions() > n })
	if got := sink.servers(); len(got) != 1 {
		t.Fatalf("backends after reconnect: %v", got)
	}
}

func TestDockerKeepsBackendsWhileEngineDown(t *testing.T) {
	f := newFakeDocker()
	f.put("c1", "10.0.0.2")
	f.put("c2", "10.0.0.3")
	sink, ev := runDocker(t, f)
	within(t, 2*time.Second, "the first sync", func() bool { return len(sink.servers()) == 2 })
	n := f.sessions()
	f.setPing(errors.New("connection refused"))
	f.breakStream(errors.New("unexpected EOF"))
	within(t, 2*time.Second, "the outage to be recorded", func() bool { return outage(ev) })
	updates := sink.count()
	p0 := f.pingCount()
	within(t, 2*time.Second, "several reconnect attempts", func() bool { return f.pingCount() >= p0+3 })
	if sink.count() != updates || len(sink.servers()) != 2 {
		t.Fatalf("an engine outage changed the backends: %v", sink.servers())
	}
	// Meanwhile c2 went away and c3 came; the reconnect's resync finds both.
	f.drop("c2")
	f.put("c3", "10.0.0.4")
	f.setPing(nil)
	within(t, 2*time.Second, "the resync after reconnect", func() bool {
		s := sink.servers()
		_, c1 := s["c1"]
		_, c3 := s["c3"]
		return len(s) == 2 && c1 && c3
	})
	if f.sessions() <= n {
		t.Fatal("no new event stream after the engine came back")
	}
}

func TestDockerResyncFindsMissedChangeAndReconnects(t *testing.T) {
	f := newFakeDocker()
	f.put("c1", "10.0.0.2")
	sink, _ := runDocker(t, f, func(c *DockerConfig) { c.Resync = 20 * time.Millisecond })
	within(t, 2*time.Second, "the first sync", func() bool { return len(sink.servers()) == 1 })
	n := f.sessions()
	f.put("c2", "10.0.0.3") // and the stream never says so
	within(t, 2*time.Second, "the resync to find c2", func() bool { return len(sink.servers()) == 2 })
	within(t, 2*time.Second, "a reconnect of the stream that missed it", func() bool { return f.sessions() > n })
}

func TestDockerStopDrainsBeforeInspect(t *testing.T) {
	cases := []struct {
		desc, action string
		attrs        []string
		drains       bool
	}{
		{"stop", "stop", nil, true},
		{"kill SIGTERM", "kill", []string{"signal", "15"}, true},
		{"kill SIGINT by name", "kill", []string{"signal", "SIGINT"}, true},
		{"kill SIGKILL does not drain", "kill", []string{"signal", "9"}, false},
		{"kill SIGHUP does not drain", "kill", []string{"signal", "1"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			f := newFakeDocker()
			f.put("c1", "10.0.0.2")
			sink, _ := runDocker(t, f)
			within(t, 2*time.Second, "the first sync", func() bool { return len(sink.servers()) == 1 })
			gate := make(chan struct{})
			f.mu.Lock()
			f.inspectGate = gate // the inspect after the event hangs
			f.mu.Unlock()
			defer close(gate)
			before := sink.count()
			f.send(containerEvent(tc.action, "c1", tc.attrs...))
			if !tc.drains {
				// The event is ignored: a later one shows it was handled.
				f.mu.Lock()
				f.inspectGate = nil
				f.mu.Unlock()
				f.put("c2", "10.0.0.3")
				f.send(containerEvent("start", "c2"))
				within(t, 2*time.Second, "the next event", func() bool { return len(sink.servers()) == 2 })
				if sink.servers()["c1"].Stopping {
					t.Fatalf("%s drained the backend", tc.desc)
				}
				return
			}
			within(t, 2*time.Second, "the drain, without waiting for inspect", func() bool {
				return sink.count() > before && sink.servers()["c1"].Stopping
			})
		})
	}
}

func TestDockerStartEndsStopping(t *testing.T) {
	f := newFakeDocker()
	f.put("c1", "10.0.0.2")
	sink, _ := runDocker(t, f)
	within(t, 2*time.Second, "the first sync", func() bool { return len(sink.servers()) == 1 })
	f.send(containerEvent("kill", "c1", "signal", "15"))
	within(t, 2*time.Second, "drain", func() bool { return sink.servers()["c1"].Stopping })
	// docker restart: the container stops and starts again, same ID.
	f.put("c1", "10.0.0.2", func(r *container.InspectResponse) { r.State.StartedAt = "2026-01-01T00:05:00Z" })
	f.send(containerEvent("start", "c1"))
	within(t, 2*time.Second, "back in rotation after start", func() bool {
		s, ok := sink.servers()["c1"]
		return ok && !s.Stopping
	})
}

func TestDockerPauseDrainsUnpauseRestores(t *testing.T) {
	f := newFakeDocker()
	f.put("c1", "10.0.0.2")
	sink, _ := runDocker(t, f)
	within(t, 2*time.Second, "the first sync", func() bool { return len(sink.servers()) == 1 })
	f.put("c1", "10.0.0.2", func(r *container.InspectResponse) { r.State.Paused = true })
	f.send(containerEvent("pause", "c1"))
	within(t, 2*time.Second, "drain on pause", func() bool { return sink.servers()["c1"].Stopping })
	f.put("c1", "10.0.0.2")
	f.send(containerEvent("unpause", "c1"))
	within(t, 2*time.Second, "back on unpause", func() bool {
		s, ok := sink.servers()["c1"]
		return ok && !s.Stopping
	})
}

func TestDockerInspectNotFoundRemoves(t *testing.T) {
	f := newFakeDocker()
	f.put("c1", "10.0.0.2")
	f.put("c2", "10.0.0.3")
	sink, _ := runDocker(t, f)
	within(t, 2*time.Second, "the first sync", func() bool { return len(sink.servers()) == 2 })
	// The container is gone by the time its die event is inspected.
	f.drop("c1")
	f.send(containerEvent("die", "c1"))
	within(t, 2*time.Second, "c1 removed", func() bool {
		_, ok := sink.servers()["c1"]
		return !ok && len(sink.servers()) == 1
	})
}

func TestDockerHealthStatusEvent(t *testing.T) {
	f := newFakeDocker()
	f.put("c1", "10.0.0.2", func(r *container.InspectResponse) {
		r.State.Health = &container.Health{Status: container.Healthy}
	})
	sink, _ := runDocker(t, f)
	within(t, 2*time.Second, "the first sync", func() bool { return sink.servers()["c1"].DockerHealth == "healthy" })
	f.put("c1", "10.0.0.2", func(r *container.InspectResponse) {
		r.State.Health = &container.Health{Status: container.Unhealthy}
	})
	f.send(containerEvent("health_status: unhealthy", "c1"))
	within(t, 2*time.Second, "unhealthy published", func() bool { return sink.servers()["c1"].DockerHealth == "unhealthy" })
}
