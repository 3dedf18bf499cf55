package lb

var _ Selector = (*leastConn)(nil)

// leastConn picks the usable backend with the fewest in-flight requests
// relative to its weight: a is better than b when inflight_a*w_b <
// inflight_b*w_a, so a backend of weight 2 carries twice the requests of one
// of weight 1 before they tie. Effective (slow start) weights are used while
// a backend ramps.
//
// The scan starts at a rotating index and keeps the first best, so ties go
// round robin rather than always to the first backend. The start index walks
// the smooth weighted schedule, so when every backend is idle (all tie at
// zero) the picks follow the weights exactly, as round robin would. The
// scan is O(n), as in NGINX; it stops early at the first idle backend, which
// nothing can beat.
type leastConn struct {
	weights
}

func newLeastConn(g *Group) *leastConn { return &leastConn{newWeights(g)} }

func (s *leastConn) Select(g *Group, r *Request) *Backend {
	bs, now := g.Backends, r.Now
	ws := s.w[:len(bs)]
	i := s.rot.next()
	best := -1
	var bestIn, bestW int64
	for range bs {
		if b := bs[i]; r.Usable(b) {
			in, w := b.InFlight(), ws[i]
			if in == 0 {
				return b // nothing beats idle, and ties keep the first
			}
			if s.slow {
				w = int64(b.EffectiveWeight(now))
			}
			if best < 0 || in*bestW < bestIn*w {
				best, bestIn, bestW = i, in, w
			}
		}
		if i++; i == len(bs) {
			i = 0
		}
	}
	if best < 0 {
		return nil
	}
	return bs[best]
}

// weights is what the scanning methods (least_conn, least_time) share: the
// configured weights on the EffectiveWeight scale, read once, and the
// rotating start of the scan.
type weights struct {
	w    []int64   // configured weight ×1000 by backend index
	slow bool      // slow start is on: read EffectiveWeight per pick instead
	rot  *schedule // where each scan starts
}

func newWeights(g *Group) weights {
	cw := configuredWeights(g)
	w := make([]int64, len(cw))
	for i, x := range cw {
		w[i] = int64(x) * 1000
	}
	return weights{w: w, slow: hasSlowStart(g), rot: newSchedule(cw)}
}
