package lb

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxSchedule caps the precomputed smooth schedule at 64Ki entries
	// (256 KiB). Weights are divided by their GCD first, so only groups
	// whose reduced weights sum past this fall back to the O(n) loop.
	maxSchedule = 1 << 16
	// maxScheduleWork caps the cost of building a schedule (entries times
	// backends, about 4 ms), since every routing snapshot builds its own.
	maxScheduleWork = 1 << 22
	// scheduleTries is how many schedule slots one pick may skip over
	// because their backend is unusable before it takes the exact loop.
	scheduleTries = 16
	// rampRecheck is how often, in request time, a group with slow start
	// looks for backends that are ramping. A backend that became ready
	// since the last look may get its full weight for up to this long.
	rampRecheck = int64(time.Millisecond)
)

var _ Selector = (*roundRobin)(nil)

// roundRobin is smooth weighted round robin as NGINX does it: every pick adds
// each usable backend's effective weight to its current weight, takes the
// highest, and subtracts the total from it. Weights 5,1,1 give a a b a c a a.
//
// That loop is O(n) under a mutex, so the common case takes a shortcut: the
// same sequence for the configured weights is precomputed once per snapshot
// (one cycle, sum of weights long) and walked with an atomic counter, without
// a lock. A pick whose slot holds an unusable backend takes the next slot, so
// over a cycle every usable backend still gets exactly its weight. The exact
// loop runs when a backend is slow-starting (its effective weight is not its
// configured weight), when the cycle would be too long to precompute, and
// when scheduleTries slots in a row were unusable.
type roundRobin struct {
	sched *schedule
	ramp  rampWatch

	mu      sync.Mutex
	current []int // the exact loop's current weights, by backend index
}

func newRoundRobin(g *Group) *roundRobin {
	s := &roundRobin{
		sched:   newSchedule(configuredWeights(g)),
		current: make([]int, len(g.Backends)),
	}
	s.ramp.on = hasSlowStart(g)
	return s
}

func (s *roundRobin) Select(g *Group, r *Request) *Backend {
	if s.sched.ok() && !s.ramp.active(g, r.Now) {
		for range scheduleTries {
			if b := g.Backends[s.sched.next()]; r.Usable(b) {
				return b
			}
		}
	}
	return s.exact(g, r)
}

// exact is NGINX's loop over effective weights.
func (s *roundRobin) exact(g *Group, r *Request) *Backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	total, best := 0, -1
	for i, b := range g.Backends {
		if !r.Usable(b) {
			continue
		}
		w := b.EffectiveWeight(r.Now)
		s.current[i] += w
		total += w
		if best < 0 || s.current[i] > s.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	s.current[best] -= total
	return g.Backends[best]
}

// tried reports whether b already failed r.
func tried(r *Request, b *Backend) bool {
	return len(r.Tried) > 0 && slices.Contains(r.Tried, b)
}

// configuredWeights returns the backends' weights. Selectors read them once:
// a weight change is a discovery change, which builds a new snapshot and so
// new selectors.
func configuredWeights(g *Group) []int {
	w := make([]int, len(g.Backends))
	for i, b := range g.Backends {
		w[i] = b.Weight()
	}
	return w
}

// schedule is one cycle of smooth weighted round robin over fixed weights,
// walked by an atomic counter. Its zero value (and nil) has no cycle: next
// then rotates over the n backends it was built for.
type schedule struct {
	order []uint32 // backend indexes; nil when the cycle is too long
	n     uint64   // number of backends
	ctr   atomic.Uint64
}

// newSchedule precomputes the smooth sequence for weights (each ≥ 1).
func newSchedule(weights []int) *schedule {
	s := &schedule{n: uint64(len(weights))}
	if len(weights) == 0 {
		return s
	}
	d := 0
	for _, w := range weights {
		d = gcd(d, w)
	}
	total := 0
	for _, w := range weights {
		total += w / d
	}
	if total > maxSchedule || total*len(weights) > maxScheduleWork {
		return s
	}
	cur := make([]int, len(weights))
	s.order = make([]uint32, total)
	for k := range s.order {
		best := 0
		for i, w := range weights {
			cur[i] += w / d
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		s.order[k] = uint32(best)
	}
	return s
}

// ok reports whether the schedule holds a precomputed cycle.
func (s *schedule) ok() bool { return s.order != nil }

// next returns the backend index of the next slot: the next entry of the
// cycle, or plain rotation when there is none. It must not be called on a
// schedule of zero backends.
func (s *schedule) next() int {
	c := s.ctr.Add(1) - 1
	if s.order != nil {
		return int(s.order[c%uint64(len(s.order))])
	}
	return int(c % s.n)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// rampWatch tells whether any backend of a group is slow-starting, looking
// at most once per rampRecheck so that picks stay O(1).
type rampWatch struct {
	on      bool         // the group has slow start at all
	checked atomic.Int64 // request time of the last look
	ramping atomic.Bool  // what the last look found
}

// hasSlowStart reports whether g's backends ramp their weight when they
// become ready.
func hasSlowStart(g *Group) bool { return g.Settings != nil && g.Settings.SlowStart > 0 }

// active reports whether a backend of g may be slow-starting at now.
func (w *rampWatch) active(g *Group, now int64) bool {
	if !w.on {
		return false
	}
	if last := w.checked.Load(); now >= last && now-last < rampRecheck && last != 0 {
		return w.ramping.Load()
	}
	ramping := false
	for _, b := range g.Backends {
		if b.SlowStarting(now) {
			ramping = true
			break
		}
	}
	w.ramping.Store(ramping)
	w.checked.Store(now)
	return ramping
}
