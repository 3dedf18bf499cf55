// Package discovery is where backends come from: Docker containers that opt
// in by label (docker.go) and static pools from the config file (file.go).
// Both feed an lb.Balancer with []lb.PoolSpec; neither imports proxy.
package discovery

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-lb/shoal/lb"
)

// Container is what discovery needs to know of a container, taken from an
// inspect result. Keeping it plain lets the label rules be a pure function.
type Container struct {
	ID      string
	Name    string
	Labels  map[string]string
	Created time.Time
	Started time.Time
	Running bool
	Paused  bool
	Health  string            // "", "starting", "healthy", "unhealthy"
	Exposed []int             // exposed TCP ports, sorted
	IPs     map[string]string // network name -> IP address
}

// LabelOptions are the settings the label rules depend on.
type LabelOptions struct {
	Prefix          string // label prefix, default "shoal"
	ExposeByDefault bool   // take part without <prefix>.enable=true
	// Network is the resolved network to reach backends on; "" means pick
	// one of Shared, or the container's only network.
	Network string
	// Shared lists the networks Shoal's own container is on, when it runs in
	// one; used when Network is "".
	Shared []string
	// Resolve maps a network name given in a label (maybe without the compose
	// project prefix) to the real name; nil means names are taken as given.
	Resolve func(string) (string, error)
}

// Member is a container's place in a pool.
type Member struct {
	Pool   string
	Server lb.Server
	// PoolKeys holds the pool-level label values this container carries,
	// without the prefix, e.g. "method": "least_conn". Each has been checked.
	PoolKeys map[string]string
}

// LabelError names the container, the label, the value and what was
// expected. The container is skipped.
type LabelError struct {
	Container, Label, Value, Expected string
}

func (e *LabelError) Error() string {
	return fmt.Sprintf("container %s: label %s=%q: expected %s; the container is skipped", e.Container, e.Label, e.Value, e.Expected)
}

// serverKeys are the per-container keys; every other known key is pool-level.
var serverKeys = map[string]string{
	"enable":  "true or false",
	"pool":    "a pool name",
	"port":    "a TCP port from 1 to 65535",
	"weight":  "an integer from 1 to 1000",
	"backup":  "true or false",
	"network": "the name of a network the container is on",
}

// ParseContainer applies the label rules to one container. It returns
// ok=false for containers that do not take part (not running, not enabled).
// A bad label returns a *LabelError. Unknown keys under the prefix are
// returned as notes, for a warning, and do not skip the container.
func ParseContainer(c Container, o LabelOptions) (m Member, ok bool, notes []string, err error) {
	prefix := o.Prefix
	if prefix == "" {
		prefix = "shoal"
	}
	label := func(k string) (string, bool) {
		v, ok := c.Labels[prefix+"."+k]
		return strings.TrimSpace(v), ok
	}
	bad := func(k, v string) error {
		exp := serverKeys[k]
		if exp == "" {
			exp = lb.PoolKeys[k]
		}
		return &LabelError{Container: c.Name, Label: prefix + "." + k, Value: v, Expected: exp}
	}
	if !c.Running {
		return m, false, nil, nil
	}
	enabled := o.ExposeByDefault
	if v, set := label("enable"); set {
		b, perr := strconv.ParseBool(v)
		if perr != nil {
			return m, false, nil, bad("enable", v)
		}
		enabled = b
	}
	if !enabled {
		return m, false, nil, nil
	}

	m.Pool = c.Name
	if svc := c.Labels["com.docker.compose.service"]; svc != "" {
		m.Pool = svc
	}
	if v, set := label("pool"); set {
		if v == "" || strings.ContainsAny(v, " /") {
			return m, false, nil, bad("pool", v)
		}
		m.Pool = v
	}

	var port int
	if v, set := label("port"); set {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > 65535 {
			return m, false, nil, bad("port", v)
		}
		port = n
	} else {
		switch len(c.Exposed) {
		case 1:
			port = c.Exposed[0]
		case 0:
			return m, false, nil, &LabelError{Container: c.Name, Label: prefix + ".port", Value: "", Expected: "a port: the container exposes none"}
		default:
			return m, false, nil, &LabelError{Container: c.Name, Label: prefix + ".port", Value: "", Expected: fmt.Sprintf("one of the exposed ports %v: the container exposes several", c.Exposed)}
		}
	}

	weight := 1
	if v, set := label("weight"); set {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > 1000 {
			return m, false, nil, bad("weight", v)
		}
		weight = n
	}
	var backup bool
	if v, set := label("backup"); set {
		b, perr := strconv.ParseBool(v)
		if perr != nil {
			return m, false, nil, bad("backup", v)
		}
		backup = b
	}

	network := o.Network
	if v, set := label("network"); set {
		network = v
		if o.Resolve != nil {
			r, rerr := o.Resolve(v)
			if rerr != nil {
				return m, false, nil, &LabelError{Container: c.Name, Label: prefix + ".network", Value: v, Expected: rerr.Error()}
			}
			network = r
		}
	}
	ip, nerr := pickIP(c, network, o.Shared)
	if nerr != nil {
		return m, false, nil, nerr
	}

	m.PoolKeys = map[string]string{}
	for k, v := range c.Labels {
		key, found := strings.CutPrefix(k, prefix+".")
		if !found {
			continue
		}
		if _, isServer := serverKeys[key]; isServer {
			continue
		}
		if _, isPool := lb.PoolKeys[key]; !isPool {
			notes = append(notes, fmt.Sprintf("container %s: unknown label %s is ignored", c.Name, k))
			continue
		}
		v = strings.TrimSpace(v)
		// Each value is checked on its own; a combination (method=hash
		// needs hash.key) is judged on the merged pool.
		if _, perr := lb.ParseSettings(map[string]string{key: v}); perr != nil {
			if ke, isKey := perr.(*lb.KeyError); !isKey || ke.Key == key {
				return m, false, nil, bad(key, v)
			}
		}
		m.PoolKeys[key] = v
	}
	sort.Strings(notes)

	m.Server = lb.Server{
		ID:           c.ID,
		Name:         c.Name,
		Address:      joinHostPort(ip, port),
		Weight:       weight,
		Backup:       backup,
		Source:       "docker",
		Created:      c.Created,
		Started:      c.Started,
		DockerHealth: c.Health,
		Stopping:     c.Paused,
	}
	return m, true, notes, nil
}

// NotOnNetworkError says a container is not on the network Shoal reaches
// backends on. It is warned about once per container.
type NotOnNetworkError struct {
	Container, Network string
	Networks           []string
}

func (e *NotOnNetworkError) Error() string {
	if e.Network == "" {
		return fmt.Sprintf("container %s: no network to reach it on: it is on %v; set --network or the label <prefix>.network; the container is skipped", e.Container, e.Networks)
	}
	return fmt.Sprintf("container %s is not on network %q (it is on %v); the container is skipped", e.Container, e.Network, e.Networks)
}

func pickIP(c Container, network string, shared []string) (string, error) {
	names := make([]string, 0, len(c.IPs))
	for n := range c.IPs {
		names = append(names, n)
	}
	sort.Strings(names)
	if network != "" {
		if ip := c.IPs[network]; ip != "" {
			return ip, nil
		}
		return "", &NotOnNetworkError{Container: c.Name, Network: network, Networks: names}
	}
	for _, n := range shared {
		if ip := c.IPs[n]; ip != "" {
			return ip, nil
		}
	}
	if len(shared) == 0 && len(names) == 1 && c.IPs[names[0]] != "" {
		return c.IPs[names[0]], nil
	}
	return "", &NotOnNetworkError{Container: c.Name, Networks: names}
}

func joinHostPort(ip string, port int) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(port)
	}
	return ip + ":" + strconv.Itoa(port)
}

// MergePools groups members by pool and settles each pool-level key by
// vote: the most common value wins, a tie goes to the oldest container.
// Disagreements are returned as warnings that name the pool, the key and the
// values. A pool whose merged settings are invalid (e.g. method=hash with no
// hash.key anywhere) is reported and served with the defaults.
func MergePools(members []Member, prefix string) ([]lb.PoolSpec, []string) {
	if prefix == "" {
		prefix = "shoal"
	}
	byPool := map[string][]Member{}
	for _, m := range members {
		byPool[m.Pool] = append(byPool[m.Pool], m)
	}
	names := make([]string, 0, len(byPool))
	for n := range byPool {
		names = append(names, n)
	}
	sort.Strings(names)
	var warns []string
	out := make([]lb.PoolSpec, 0, len(names))
	for _, name := range names {
		ms := byPool[name]
		sort.Slice(ms, func(i, j int) bool {
			if !ms[i].Server.Created.Equal(ms[j].Server.Created) {
				return ms[i].Server.Created.Before(ms[j].Server.Created)
			}
			return ms[i].Server.ID < ms[j].Server.ID
		})
		kv, w := vote(name, ms, prefix)
		warns = append(warns, w...)
		set, err := lb.ParseSettings(kv)
		if err != nil {
			warns = append(warns, fmt.Sprintf("pool %s: %v; the pool uses the default settings", name, err))
			set = lb.DefaultSettings()
		}
		ps := lb.PoolSpec{Name: name, Settings: set}
		for _, m := range ms {
			ps.Servers = append(ps.Servers, m.Server)
		}
		out = append(out, ps)
	}
	return out, warns
}

// vote settles each key over members sorted oldest first.
func vote(pool string, ms []Member, prefix string) (map[string]string, []string) {
	keys := map[string]bool{}
	for _, m := range ms {
		for k := range m.PoolKeys {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	kv := map[string]string{}
	var warns []string
	for _, k := range sorted {
		count := map[string]int{}
		var order []string // values in order of first (oldest) appearance
		for _, m := range ms {
			if v, ok := m.PoolKeys[k]; ok {
				if count[v] == 0 {
					order = append(order, v)
				}
				count[v]++
			}
		}
		best := order[0]
		for _, v := range order[1:] {
			if count[v] > count[best] {
				best = v
			}
		}
		kv[k] = best
		if len(order) > 1 {
			vals := make([]string, 0, len(order))
			for _, v := range order {
				vals = append(vals, fmt.Sprintf("%q×%d", v, count[v]))
			}
			warns = append(warns, fmt.Sprintf("pool %s: members disagree on %s.%s (%s); using %q", pool, prefix, k, strings.Join(vals, ", "), best))
		}
	}
	return kv, warns
}
