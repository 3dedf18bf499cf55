package lb

import (
	"math/bits"
	"math/rand/v2"
)

// randomTries bounds the draws for each choice: d choices take at most
// d*randomTries draws, after which the pick is the first usable backend from
// a random start.
const randomTries = 4

var _ Selector = (*random)(nil)

// random draws d backends at random in proportion to their weights and keeps
// the one with the fewest in-flight requests relative to weight, as NGINX's
// "random two least_conn" does: the power of d choices (Mitzenmacher), which
// cuts the busiest backend's load from O(log n / log log n) to
// O(log log n / log d) above the mean. d is Settings.RandomChoices, default 2;
// 1 is plain weighted random. Ties keep the first drawn, so an idle group
// gets exactly weighted random.
//
// A draw is O(1) (an alias table) and rejected when the backend is unusable. Randomness comes from
// Request.Rand when set (tests inject a seeded source), else from
// math/rand/v2's runtime source, which takes no lock and does not allocate.
// Like NGINX, it ignores slow start: the draw uses configured weights.
type random struct {
	pick alias   // over the configured weights
	w    []int64 // configured weights
	d    int     // choices drawn per pick
}

func newRandom(g *Group) *random {
	cw := configuredWeights(g)
	s := &random{pick: newAlias(cw), w: make([]int64, len(cw)), d: 2}
	for i, x := range cw {
		s.w[i] = int64(x)
	}
	if g.Settings != nil && g.Settings.RandomChoices > 0 {
		s.d = g.Settings.RandomChoices
	}
	return s
}

func (s *random) Select(g *Group, r *Request) *Backend {
	next := r.Rand
	if next == nil {
		next = rand.Uint64
	}
	best, got := -1, 0
	var bestIn, bestW int64
	for draws := 0; got < s.d && draws < s.d*randomTries; draws++ {
		i := s.pick.index(next())
		b := g.Backends[i]
		if !r.Usable(b) {
			continue
		}
		got++
		if in := b.InFlight(); best < 0 || in*bestW < bestIn*s.w[i] {
			best, bestIn, bestW = i, in, s.w[i]
		}
	}
	if best >= 0 {
		return g.Backends[best]
	}
	n := len(g.Backends)
	i, _ := bits.Mul64(next(), uint64(n))
	for k := int(i); ; {
		if b := g.Backends[k]; r.Usable(b) {
			return b
		}
		if k++; k == n {
			k = 0
		}
		if k == int(i) {
			return nil
		}
	}
}
