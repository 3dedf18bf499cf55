package lb

// The consistent hash is a ketama-style ring. Rendezvous hashing (HRW) was
// measured against it, weights 1, keys "/user/<n>": spread by
// TestRingVersusRendezvous (1M keys, deterministic), speed of the lookup
// alone, key hash excluded, by BenchmarkRingVersusRendezvous (this shared
// 2-core machine at load average ~13, so absolute times are inflated; the
// ratios are the point):
//
//	                      busiest/mean  stddev/mean  ns/lookup
//	n=10   ring (1600 pts)       1.122        0.072        7.9
//	n=10   HRW                   1.008        0.003       75.6
//	n=10   HRW weighted            -            -        585.7
//	n=100  ring (16000 pts)      1.178        0.076        7.9
//	n=100  HRW                   1.018        0.008      559.4
//	n=100  HRW weighted            -            -       5645
//
// HRW spreads almost perfectly but costs a hash per backend per request
// (and weighted HRW a logarithm on top), 70x the ring at 100 backends. The
// ring is O(1) with its bucket index, keeps the busiest backend within 1.2x
// of the mean with NGINX's 160 points per unit of weight, and on removal
// moves only the removed backend's keys (TestConsistentHashMovesFewKeys).
// Bounded loads (Settings.BalanceFactor) caps what the uneven spread costs.

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
)

const (
	// pointsPerWeight is how many points a backend of weight 1 has on the
	// ring, as in NGINX. More points spread keys more evenly but make the
	// ring bigger and slower to build.
	pointsPerWeight = 160
	// maxRingPoints caps the ring at 256Ki points (2 MiB). A group whose
	// weights sum above 1638 gets fewer points per unit of weight (halved
	// until it fits), which keeps proportions but spreads less evenly.
	maxRingPoints = 1 << 18
	// golden is 2^64 divided by the golden ratio, an odd constant used to
	// step through hash sequences.
	golden = 0x9E3779B97F4A7C15
)

// newHash builds the selector of the hash method: the ring, or the modulo
// hash when the pool turned consistency off.
func newHash(g *Group) Selector {
	if g.Settings != nil && !g.Settings.HashConsistent {
		return newModHash(g)
	}
	return newConsistentHash(g)
}

var _ Selector = (*consistentHash)(nil)

// consistentHash maps a key to the first point at or after the key's hash on
// a ring of backend points. A backend's points are derived from its ID only
// and their number is proportional to its weight, so every Shoal process
// that sees the same backends builds the same ring, whatever the order of
// discovery, and adding or removing one of n backends moves about 1/n of the
// keys.
//
// When the key's backend is unusable the walk goes on along the ring, so the
// key's second choice is stable too. With a balance factor above 1 (bounded
// loads, Mirrokni et al. 2016) the walk also passes over backends whose
// in-flight count has reached ceil(factor * (total_inflight+1) * w / W),
// where W is the usable backends' total weight: with equal weights, the
// paper's ceil(factor * (total+1) / n); weights scale the bound so that a
// heavier backend, which owns more of the ring, may also carry more. A
// missing key (nil) goes round robin. Slow start does not apply to the ring,
// as in NGINX: a ramp would move keys twice.
type consistentHash struct {
	ring   ring
	walk   int     // most points passed over before round robin takes over
	factor float64 // bounded loads factor; 0 = off
	w      []int64 // configured weights, for bounded loads
	rr     *roundRobin
}

func newConsistentHash(g *Group) *consistentHash {
	cw := configuredWeights(g)
	s := &consistentHash{ring: newRing(g), rr: newRoundRobin(g), w: make([]int64, len(cw))}
	for i, x := range cw {
		s.w[i] = int64(x)
	}
	// With at least 160 points per backend in random order, 8n steps pass
	// over every backend's points many times, unless nearly all are down.
	s.walk = min(len(s.ring.points), 8*len(g.Backends))
	if g.Settings != nil && g.Settings.BalanceFactor > 1 {
		s.factor = g.Settings.BalanceFactor
	}
	return s
}

func (s *consistentHash) Select(g *Group, r *Request) *Backend {
	if r.Key == nil {
		return s.rr.Select(g, r)
	}
	p := s.ring.search(uint32(hashKey(r.Key) >> 32))
	if s.factor > 0 {
		return s.bounded(g, r, p)
	}
	for range s.walk {
		if b := g.Backends[s.ring.owners[p]]; r.Usable(b) {
			return b
		}
		if p++; p == len(s.ring.points) {
			p = 0
		}
	}
	return s.rr.Select(g, r)
}

// bounded walks the ring from point p to the first usable backend under its
// load bound. One always exists: the usable backends' in-flight total is
// below the sum of their bounds. An idle backend is always under its bound,
// so the O(n) pass that sums the load runs only when the walk meets a busy
// one.
func (s *consistentHash) bounded(g *Group, r *Request, p int) *Backend {
	c := -1.0 // factor * (total+1) / W, once computed
	for range len(s.ring.points) {
		i := s.ring.owners[p]
		if b := g.Backends[i]; r.Usable(b) {
			in := b.InFlight()
			if in == 0 {
				return b
			}
			if c < 0 {
				c = s.loadPerWeight(g, r)
			}
			if float64(in) < math.Ceil(c*float64(s.w[i])) {
				return b
			}
		}
		if p++; p == len(s.ring.points) {
			p = 0
		}
	}
	return s.rr.Select(g, r) // in-flight counts moved under us
}

// loadPerWeight is factor * (total_inflight+1) / W over the usable backends.
func (s *consistentHash) loadPerWeight(g *Group, r *Request) float64 {
	var total, wsum int64
	for i, b := range g.Backends {
		if r.Usable(b) {
			total += b.InFlight()
			wsum += s.w[i]
		}
	}
	return s.factor * float64(total+1) / float64(max(wsum, 1))
}

// ring is a sorted circle of 32-bit points, each owned by a backend.
type ring struct {
	points []uint32 // ascending
	owners []uint32 // backend index of each point
	// lut[k] is the index of the first point whose top bits are ≥ k, so a
	// search looks only at the one or two points of its bucket.
	lut   []uint32
	shift uint // 32 minus the bits of a bucket number
}

func newRing(g *Group) ring {
	sum := 0
	for _, b := range g.Backends {
		sum += b.Weight()
	}
	per := pointsPerWeight
	for per > 1 && sum*per > maxRingPoints {
		per /= 2
	}
	type point struct {
		h  uint32
		id string
		i  uint32
	}
	pts := make([]point, 0, sum*per)
	for i, b := range g.Backends {
		base := hashKey([]byte(b.ID))
		for j := range b.Weight() * per {
			h := uint32(mix64(base+uint64(j+1)*golden) >> 32)
			pts = append(pts, point{h, b.ID, uint32(i)})
		}
	}
	// Equal points (rare) are ordered by ID, not by discovery order.
	slices.SortFunc(pts, func(a, b point) int {
		if c := cmp.Compare(a.h, b.h); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	rg := ring{points: make([]uint32, len(pts)), owners: make([]uint32, len(pts))}
	for k, p := range pts {
		rg.points[k], rg.owners[k] = p.h, p.i
	}
	// About one point per bucket.
	b := uint(bits.Len(uint(len(pts))))
	rg.shift = 32 - b
	rg.lut = make([]uint32, 1<<b+1)
	k := 0
	for bucket := range rg.lut {
		for k < len(pts) && uint64(rg.points[k])>>rg.shift < uint64(bucket) {
			k++
		}
		rg.lut[bucket] = uint32(k)
	}
	return rg
}

// search returns the index of the first point at or after h, wrapping to 0.
// The ring must not be empty.
func (rg *ring) search(h uint32) int {
	k := h >> rg.shift
	i, end := rg.lut[k], rg.lut[k+1]
	for i < end && rg.points[i] < h {
		i++
	}
	if int(i) == len(rg.points) {
		return 0
	}
	return int(i)
}

// hashKey is a 64-bit hash of key with no seed, so that a key maps the same
// way in every Shoal process and across restarts. It is xxHash64's round
// over 8-byte words, one lane, with the length folded in and murmur3's
// finalizer at the end, so that short keys (an IPv4 /24 is 3 bytes) still
// spread over all 64 bits. It is not meant to resist crafted keys.
func hashKey(key []byte) uint64 {
	const p1, p2, p3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
	h := p3 + uint64(len(key))*p1
	for len(key) >= 8 {
		h ^= bits.RotateLeft64(binary.LittleEndian.Uint64(key)*p2, 31) * p1
		h = bits.RotateLeft64(h, 27)*p1 + p2
		key = key[8:]
	}
	if len(key) > 0 {
		var t uint64
		for i, c := range key {
			t |= uint64(c) << (8 * i)
		}
		h ^= bits.RotateLeft64(t*p2, 31) * p1
		h = bits.RotateLeft64(h, 27) * p1
	}
	return mix64(h)
}

// mix64 is murmur3's 64-bit finalizer: every input bit affects every output
// bit.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xFF51AFD7ED558CCD
	h ^= h >> 33
	h *= 0xC4CEB9FE1A85EC53
	h ^= h >> 33
	return h
}
