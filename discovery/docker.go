package discovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
	"github.com/rs/zerolog"
	"github.com/shoal-lb/shoal/lb"
)

// DockerAPI is the part of the Docker client that discovery uses. The real
// *client.Client implements it; tests of edge cases may use a small fake.
type DockerAPI interface {
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error)
	Events(ctx context.Context, options events.ListOptions) (<-chan events.Message, <-chan error)
	NetworkList(ctx context.Context, options network.ListOptions) ([]network.Summary, error)
	Ping(ctx context.Context) (types.Ping, error)
}

// NewDockerClient returns a client configured from the standard environment
// (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH; a socket proxy over TCP
// works) that negotiates the API version with the engine.
func NewDockerClient() (*client.Client, error) {
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}

// Sink receives the pools that discovery found.
type Sink interface {
	Update(source string, pools []lb.PoolSpec)
}

// DockerConfig configures Docker discovery. Zero values take the defaults.
type DockerConfig struct {
	API    DockerAPI
	Sink   Sink
	Log    zerolog.Logger
	Events *lb.EventLog // optional

	LabelPrefix     string // default "shoal"
	Network         string // --network, with or without the compose project prefix
	ExposeByDefault bool

	Resync     time.Duration // full resync period, default 30s
	Watchdog   time.Duration // how often the engine is pinged while the stream is open, default 10s
	BackoffMin time.Duration // first reconnect delay, default 100ms
	BackoffMax time.Duration // longest reconnect delay, default 5s

	// SelfID is Shoal's own container ID, when it runs in one; "" detects
	// it from the hostname. With no --network, backends are reached on the
	// networks Shoal shares with them.
	SelfID string

	// Hooks for metrics; each may be nil.
	OnEvent     func(action string)
	OnError     func(err error)
	OnConnected func(up bool)
}

// Docker discovers labelled containers: an initial list, then the event
// stream, inspecting only the container an event names, with a periodic full
// resync and reconnects with backoff. It keeps the last known backends while
// the engine is unreachable.
type Docker struct {
	cfg DockerConfig
	log zerolog.Logger

	mu        sync.Mutex
	network   string   // resolved --network
	shared    []string // networks of Shoal's own container
	members   map[string]Member
	stopping  map[string]time.Time       // containers Docker is stopping, since when
	warned    map[string]map[string]bool // container ID -> warnings given, to warn once
	poolWarns map[string]bool
	last      []lb.PoolSpec
	connected bool
}

// NewDocker checks the configuration; it does not contact the engine.
func NewDocker(cfg DockerConfig) *Docker {
	if cfg.LabelPrefix == "" {
		cfg.LabelPrefix = "shoal"
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.Watchdog <= 0 {
		cfg.Watchdog = 10 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	return &Docker{
		cfg:       cfg,
		log:       cfg.Log.With().Str("component", "discovery").Logger(),
		members:   map[string]Member{},
		stopping:  map[string]time.Time{},
		warned:    map[string]map[string]bool{},
		poolWarns: map[string]bool{},
	}
}

// ErrAmbiguousNetwork is returned by ResolveNetwork when a short name matches
// several compose networks.
var ErrAmbiguousNetwork = errors.New("ambiguous network name")

// ResolveNetwork finds the network called name, or the one compose created
// for it (its com.docker.compose.network label is name, so "app_net" finds
// "myproj_app_net"). When several compose projects have one, the one among
// prefer (the networks Shoal's own container is on) wins; otherwise several
// candidates is an error that lists them.
func ResolveNetwork(ctx context.Context, api DockerAPI, name string, prefer []string) (string, error) {
	nets, err := api.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return "", err
	}
	var candidates []string
	for _, n := range nets {
		if n.Name == name {
			return n.Name, nil
		}
		if n.Labels["com.docker.compose.network"] == name {
			candidates = append(candidates, n.Name)
		}
	}
	sort.Strings(candidates)
	if len(candidates) > 1 {
		var mine []string
		for _, c := range candidates {
			for _, p := range prefer {
				if c == p {
					mine = append(mine, c)
				}
			}
		}
		if len(mine) == 1 {
			return mine[0], nil
		}
	}
	switch len(candidates) {
	case 0:
		return "", fmt.Errorf("no network named %q (nor a compose network of that name)", name)
	case 1:
		return candidates[0], nil
	}
	return "", fmt.Errorf("%w: %q matches %s; give the full name", ErrAmbiguousNetwork, name, strings.Join(candidates, ", "))
}

// Check resolves --network once at startup. An ambiguous name is an error;
// an unreachable engine or a missing network is not, since both may come
// later.
func (d *Docker) Check(ctx context.Context) error {
	if d.cfg.Network == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := ResolveNetwork(ctx, d.cfg.API, d.cfg.Network, d.selfNetworks(ctx))
	if errors.Is(err, ErrAmbiguousNetwork) {
		return err
	}
	if err == nil {
		d.mu.Lock()
		d.network = n
		d.mu.Unlock()
	}
	return nil
}

// Run discovers until ctx ends. It never returns early: a lost engine is
// retried with backoff while the last known backends keep serving.
func (d *Docker) Run(ctx context.Context) {
	backoff := d.cfg.BackoffMin
	warnedDown := false
	for ctx.Err() == nil {
		start := time.Now()
		err := d.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if d.isConnected() {
			warnedDown = false // it was up: a new outage gets a new warning
		}
		d.setConnected(false)
		if d.cfg.OnError != nil {
			d.cfg.OnError(err)
		}
		if time.Since(start) > 30*time.Second {
			backoff = d.cfg.BackoffMin // it was healthy for a while
		}
		if !warnedDown {
			d.log.Warn().Err(err).Msg("Docker engine unreachable or event stream lost; keeping the last known backends and retrying in the background")
			d.event("docker", "engine unreachable: "+err.Error())
			warnedDown = true
		} else if e := d.log.Debug(); e.Enabled() {
			e.Err(err).Dur("backoff", backoff).Msg("Docker reconnect failed")
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, d.cfg.BackoffMax)
	}
}

// session is one connection to the engine: subscribe to events, resync,
// then follow the stream until it fails.
func (d *Docker) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := d.cfg.API.Ping(pctx)
	pcancel()
	if err != nil {
		return err
	}
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("type", string(events.NetworkEventType)),
	)
	msgs, errs := d.cfg.API.Events(ctx, events.ListOptions{Filters: f})
	// Subscribed first, then listed: nothing that happens in between is lost.
	if err := d.resync(ctx); err != nil {
		return err
	}
	if !d.isConnected() {
		d.log.Info().Msg("connected to the Docker engine")
		d.event("docker", "connected to the engine")
	}
	d.setConnected(true)

	resync := time.NewTicker(d.cfg.Resync)
	defer resync.Stop()
	watchdog := time.NewTicker(d.cfg.Watchdog)
	defer watchdog.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			if err == nil {
				err = errors.New("event stream ended")
			}
			return err
		case m, ok := <-msgs:
			if !ok {
				return errors.New("event stream ended")
			}
			d.handle(ctx, m)
		case <-resync.C:
			missed, err := d.resyncDiff(ctx)
			if err != nil {
				return err
			}
			if missed {
				// The stream did not tell us about a change: it may be
				// silent but dead. Start over.
				return errors.New("resync found changes the event stream did not report")
			}
		case <-watchdog.C:
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := d.cfg.API.Ping(pctx)
			pcancel()
			if err != nil {
				return fmt.Errorf("watchdog: engine does not answer: %w", err)
			}
		}
	}
}

func (d *Docker) setConnected(up bool) {
	d.mu.Lock()
	changed := d.connected != up
	d.connected = up
	d.mu.Unlock()
	if changed && d.cfg.OnConnected != nil {
		d.cfg.OnConnected(up)
	}
}

func (d *Docker) isConnected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connected
}

// handle reacts to one event by inspecting the container it names.
func (d *Docker) handle(ctx context.Context, m events.Message) {
	action := string(m.Action)
	if i := strings.IndexByte(action, ':'); i > 0 {
		action = action[:i] // "health_status: healthy"
	}
	id := m.Actor.ID
	switch m.Type {
	case events.NetworkEventType:
		if action != "connect" && action != "disconnect" {
			return
		}
		id = m.Actor.Attributes["container"]
	case events.ContainerEventType:
		switch action {
		case "start", "restart", "unpause", "health_status", "die", "destroy", "pause":
		case "stop":
			d.markStopping(id, true)
		case "kill":
			sig := m.Actor.Attributes["signal"]
			if sig != "15" && sig != "2" && sig != "SIGTERM" && sig != "SIGINT" && sig != "TERM" && sig != "INT" {
				return
			}
			d.markStopping(id, true)
		default:
			return
		}
		if action == "start" {
			d.markStopping(id, false)
		}
	default:
		return
	}
	if id == "" {
		return
	}
	if d.cfg.OnEvent != nil {
		d.cfg.OnEvent(action)
	}
	if action == "destroy" {
		d.remove(id)
		return
	}
	if (action == "stop" || action == "kill") && d.hasMember(id) {
		// Drain at once, without waiting for an inspect round trip.
		d.publish()
	}
	c, err := d.inspect(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			d.remove(id)
			return
		}
		d.log.Warn().Err(err).Str("container", id).Msg("inspect failed; the next resync will retry")
		if d.cfg.OnError != nil {
			d.cfg.OnError(err)
		}
		return
	}
	d.apply(c)
	d.publish()
}

func (d *Docker) markStopping(id string, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if on {
		if _, already := d.stopping[id]; !already {
			d.stopping[id] = time.Now()
		}
		if m, ok := d.members[id]; ok {
			m.Server.Stopping = true
			d.members[id] = m
		}
	} else {
		delete(d.stopping, id)
	}
}

func (d *Docker) hasMember(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.members[id]
	return ok
}

func (d *Docker) remove(id string) {
	d.mu.Lock()
	delete(d.members, id)
	delete(d.stopping, id)
	delete(d.warned, id)
	d.mu.Unlock()
	d.publish()
}

// resync lists every candidate container and replaces the members.
func (d *Docker) resync(ctx context.Context) error {
	_, err := d.resyncDiff(ctx)
	return err
}

// resyncDiff is resync that also reports whether it changed anything.
func (d *Docker) resyncDiff(ctx context.Context) (bool, error) {
	if err := d.refreshNetworks(ctx); err != nil {
		return false, err
	}
	opts := container.ListOptions{}
	if !d.cfg.ExposeByDefault {
		opts.Filters = filters.NewArgs(filters.Arg("label", d.cfg.LabelPrefix+".enable"))
	}
	list, err := d.cfg.API.ContainerList(ctx, opts)
	if err != nil {
		return false, err
	}
	// Inspect in parallel: a first sync of hundreds of containers should
	// take a fraction of a second, not one round trip each in a row.
	results := make([]*Container, len(list))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, s := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := d.inspect(ctx, s.ID)
			if err == nil {
				results[i] = &c
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	d.mu.Lock()
	before := d.members
	d.members = map[string]Member{}
	seen := map[string]bool{}
	for _, c := range results {
		if c == nil {
			continue
		}
		seen[c.ID] = true
		d.applyLocked(*c)
	}
	for id := range d.stopping {
		if !seen[id] {
			delete(d.stopping, id)
		}
	}
	changed := !sameMembers(before, d.members)
	d.mu.Unlock()
	d.publish()
	return changed, nil
}

func sameMembers(a, b map[string]Member) bool {
	if len(a) != len(b) {
		return false
	}
	for id, m := range a {
		n, ok := b[id]
		if !ok || m.Pool != n.Pool || m.Server.Address != n.Server.Address || m.Server.DockerHealth != n.Server.DockerHealth || !reflect.DeepEqual(m.PoolKeys, n.PoolKeys) {
			return false
		}
	}
	return true
}

// refreshNetworks resolves --network (it may have been created since) and
// Shoal's own networks.
func (d *Docker) refreshNetworks(ctx context.Context) error {
	self := d.selfNetworks(ctx)
	d.mu.Lock()
	d.shared = self
	d.mu.Unlock()
	if d.cfg.Network == "" {
		return nil
	}
	n, err := ResolveNetwork(ctx, d.cfg.API, d.cfg.Network, self)
	if err != nil && !errors.Is(err, ErrAmbiguousNetwork) && !strings.HasPrefix(err.Error(), "no network") {
		return err
	}
	d.mu.Lock()
	prev := d.network
	if err == nil {
		d.network = n
	} else if d.network == "" {
		d.network = d.cfg.Network // containers will be reported as not on it
	}
	d.mu.Unlock()
	if err != nil && prev == "" {
		d.log.Warn().Err(err).Str("network", d.cfg.Network).Msg("network not usable yet")
	}
	return nil
}

// selfNetworks lists the networks of Shoal's own container, found by
// SelfID or the hostname; nil when Shoal does not run in a container.
func (d *Docker) selfNetworks(ctx context.Context) []string {
	self := d.cfg.SelfID
	if self == "" {
		self, _ = os.Hostname()
	}
	c, err := d.cfg.API.ContainerInspect(ctx, self)
	if err != nil || c.NetworkSettings == nil {
		return nil
	}
	var nets []string
	for n := range c.NetworkSettings.Networks {
		nets = append(nets, n)
	}
	sort.Strings(nets)
	return nets
}

func (d *Docker) inspect(ctx context.Context, id string) (Container, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := d.cfg.API.ContainerInspect(ctx, id)
	if err != nil {
		return Container{}, err
	}
	return FromInspect(r), nil
}

// FromInspect takes what discovery needs from an inspect result.
func FromInspect(r container.InspectResponse) Container {
	c := Container{IPs: map[string]string{}}
	if r.ContainerJSONBase != nil {
		c.ID = r.ID
		c.Name = strings.TrimPrefix(r.Name, "/")
		c.Created, _ = time.Parse(time.RFC3339Nano, r.Created)
		if s := r.State; s != nil {
			c.Running = s.Running && !s.Restarting
			c.Paused = s.Paused
			c.Started, _ = time.Parse(time.RFC3339Nano, s.StartedAt)
			if s.Health != nil {
				c.Health = string(s.Health.Status)
			}
		}
	}
	if r.Config != nil {
		c.Labels = r.Config.Labels
		for p := range r.Config.ExposedPorts {
			if p.Proto() == "tcp" {
				c.Exposed = append(c.Exposed, p.Int())
			}
		}
		sort.Ints(c.Exposed)
	}
	if r.NetworkSettings != nil {
		for n, ep := range r.NetworkSettings.Networks {
			if ep != nil && ep.IPAddress != "" {
				c.IPs[n] = ep.IPAddress
			}
		}
	}
	return c
}

// apply updates one container's membership.
func (d *Docker) apply(c Container) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.applyLocked(c)
}

func (d *Docker) applyLocked(c Container) {
	opts := LabelOptions{
		Prefix:          d.cfg.LabelPrefix,
		ExposeByDefault: d.cfg.ExposeByDefault,
		Network:         d.network,
		Shared:          d.shared,
		Resolve: func(n string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return ResolveNetwork(ctx, d.cfg.API, n, d.shared)
		},
	}
	m, ok, notes, err := ParseContainer(c, opts)
	if err != nil {
		d.warnOnce(c, err.Error())
	} else {
		for _, n := range notes {
			d.warnOnce(c, n)
		}
	}
	if !ok {
		delete(d.members, c.ID)
		return
	}
	// A stop applies to the process it was sent to: a container that has
	// started again since (a restart, before its start event is in) is not
	// stopping.
	if since, ok := d.stopping[c.ID]; ok && !c.Started.After(since) {
		m.Server.Stopping = true
	}
	d.members[c.ID] = m
}

func (d *Docker) warnOnce(c Container, msg string) {
	if d.warned[c.ID] == nil {
		d.warned[c.ID] = map[string]bool{}
	}
	if d.warned[c.ID][msg] {
		return
	}
	d.warned[c.ID][msg] = true
	d.log.Warn().Str("container", c.Name).Msg(msg)
	d.event("warning", msg)
}

// publish sends the current pools to the sink when they changed.
func (d *Docker) publish() {
	d.mu.Lock()
	members := make([]Member, 0, len(d.members))
	for _, m := range d.members {
		members = append(members, m)
	}
	pools, warns := MergePools(members, d.cfg.LabelPrefix)
	for _, w := range warns {
		if !d.poolWarns[w] {
			d.poolWarns[w] = true
			d.log.Warn().Msg(w)
			d.event("warning", w)
		}
	}
	if reflect.DeepEqual(pools, d.last) {
		d.mu.Unlock()
		return
	}
	d.last = pools
	d.mu.Unlock()
	d.cfg.Sink.Update("docker", pools)
}

func (d *Docker) event(kind, msg string) {
	if d.cfg.Events != nil {
		d.cfg.Events.Add(lb.Event{Kind: kind, Message: msg})
	}
}
