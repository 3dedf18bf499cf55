package lb

// Request carries what a Selector may look at. The proxy fills it once per
// request and reuses it across retries.
type Request struct {
	// Key is the hash key for ip_hash and hash; nil when the request has none,
	// and the pool then falls back to round robin.
	Key []byte
	// Now is the selection time in unix nanos.
	Now int64
	// Tried lists backends that already failed this request; they are skipped.
	Tried []*Backend
	// Rand is a source of randomness for the random method; nil uses a
	// per-call fast source.
	Rand func() uint64
	// Relax is 0 for a normal pick; see Relax.
	Relax Relax
}

// Relax widens what Usable accepts when a pool has nothing better: the
// proxy asks again with a relaxation rather than answer 503.
type Relax uint8

const (
	// RelaxPassive accepts backends that passive health took out, as NGINX
	// does when every server of an upstream has failed.
	RelaxPassive Relax = 1 << iota
	// RelaxDraining also accepts backends whose container is stopping but
	// still serves (not those an operator drained).
	RelaxDraining
)

// Usable reports whether b may take this request: available (or accepted
// by the request's relaxation) and not tried. It is small enough to be
// inlined into the selectors' loops.
func (r *Request) Usable(b *Backend) bool {
	return (b.Available(r.Now) || r.Relax != 0 && b.relaxedAvailable(r.Relax)) && !tried(r, b)
}

// Selector picks one backend of a group for a request. It returns nil when no
// backend of the group is usable. A Selector is built for one group and may
// keep state about it; it must be safe for concurrent use.
type Selector interface {
	Select(g *Group, r *Request) *Backend
}

// Group is a set of backends that a selector chooses from: a pool's
// primaries, or its backups. Backends are sorted by ID so that every Shoal
// process that sees the same backends builds the same group.
type Group struct {
	Backends []*Backend
	Settings *Settings
	sel      Selector
}

// Select picks a backend of the group, or nil.
func (g *Group) Select(r *Request) *Backend {
	if len(g.Backends) == 0 {
		return nil
	}
	return g.sel.Select(g, r)
}

// SelectorFactory builds the selector for one group.
type SelectorFactory func(g *Group) Selector

// selectors maps method names to their factories. Each method lives in its
// own file (roundrobin.go, leastconn.go, ...). The map is never written after
// init.
var selectors = map[string]SelectorFactory{
	MethodRoundRobin: func(g *Group) Selector { return newRoundRobin(g) },
	MethodLeastConn:  func(g *Group) Selector { return newLeastConn(g) },
	MethodIPHash:     func(g *Group) Selector { return newModHash(g) },
	MethodHash:       newHash,
	MethodLeastTime:  func(g *Group) Selector { return newLeastTime(g) },
	MethodRandom:     func(g *Group) Selector { return newRandom(g) },
}

// newSelector builds the selector of g's method; an unknown or empty method
// is round robin, the default.
func newSelector(g *Group) Selector {
	if g.Settings != nil {
		if f, ok := selectors[g.Settings.Method]; ok {
			return f(g)
		}
	}
	return newRoundRobin(g)
}
