package lb

import (
	"math"
	"math/bits"
)

// hashTries is how many times ip_hash and the non-consistent hash rehash a
// key whose backend is unusable before they fall back to round robin, as
// NGINX does (20).
const hashTries = 20

var _ Selector = (*modHash)(nil)

// modHash maps a key's hash onto the backends in proportion to their
// weights, like NGINX's ip_hash and non-consistent hash (hash mod total
// weight). It serves ip_hash (the proxy puts the client's /24, or its IPv6
// address, in Request.Key) and hash with consistent=false. The shares are
// laid out by an alias table rather than as running totals, for an O(1)
// pick; the mapping depends only on the backends (sorted by ID) and their
// weights. Adding or removing a backend remaps most keys; use the consistent
// hash when that matters.
//
// When the key's backend is unusable the hash is mixed again,
// deterministically, so every Shoal process sends the key to the same second
// choice; after hashTries misses, or when the key is missing (nil), it is
// round robin. Slow start does not apply to the hash itself, as in NGINX: a
// ramp would move keys twice.
type modHash struct {
	pick alias // over the configured weights
	rr   *roundRobin
}

func newModHash(g *Group) *modHash {
	return &modHash{pick: newAlias(configuredWeights(g)), rr: newRoundRobin(g)}
}

func (s *modHash) Select(g *Group, r *Request) *Backend {
	if r.Key == nil {
		return s.rr.Select(g, r)
	}
	h := hashKey(r.Key)
	for range hashTries {
		if b := g.Backends[s.pick.index(h)]; r.Usable(b) {
			return b
		}
		h = mix64(h + golden)
	}
	return s.rr.Select(g, r)
}

// alias is Walker's alias table over integer weights (Vose's construction,
// in exact integer arithmetic, so that every process builds the same table):
// it maps a uniform 64-bit value to an index with probability proportional
// to its weight in O(1), where a search over running totals is O(log n) and
// mispredicts a branch at every step.
type alias struct {
	stay  []uint64 // column i keeps the draw when its fraction is below this
	other []uint32 // else the draw goes to this index
}

func newAlias(w []int) alias {
	n := uint64(len(w))
	a := alias{stay: make([]uint64, n), other: make([]uint32, n)}
	// Column capacity is the total weight W; index i brings w_i*n of it.
	var total uint64
	p := make([]uint64, n)
	for i, x := range w {
		total += uint64(x)
		p[i] = uint64(x) * n
	}
	var small, large []int
	for i := range p {
		if p[i] < total {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		a.stay[s], _ = bits.Div64(p[s], 0, total) // p[s]/W as a 64-bit fraction
		a.other[s] = uint32(l)
		p[l] -= total - p[s]
		if p[l] < total {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left fills its column exactly.
	for _, i := range append(small, large...) {
		a.stay[i], a.other[i] = math.MaxUint64, uint32(i)
	}
	return a
}

// index maps x, uniform over 64 bits, to a weighted index: the high half of
// x*n picks a column, the low half is the fraction within it.
func (a *alias) index(x uint64) int {
	col, frac := bits.Mul64(x, uint64(len(a.stay)))
	if frac < a.stay[col] {
		return int(col)
	}
	return int(a.other[col])
}
