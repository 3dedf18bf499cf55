package lb

import (
	"math"
	"time"
)

// latencyFloor is the smallest latency least_time believes. Below 100µs the
// differences between backends are mostly scheduling and GC noise, and
// without a floor one lucky fast sample would pull nearly all the load.
const latencyFloor = 100 * time.Microsecond

var _ Selector = (*leastTime)(nil)

// leastTime picks the usable backend with the lowest expected wait: score =
// (inflight+1) * max(latency, latencyFloor) / weight, where latency is the
// backend's moving average (Backend.Latency; which time it measures, to the
// header or to the last byte, is up to what the proxy passes to Release).
// The +1 counts the request being placed, so at equal load the faster
// backend wins, and a fast backend takes more requests before a slow one
// ties with it.
//
// A backend with no sample yet is scored with the lowest latency seen among
// the usable backends, so that it gets tried and measured. Ties go round
// robin: the scan starts at a rotating index (weighted like least_conn's)
// and keeps the first best.
type leastTime struct {
	weights
}

func newLeastTime(g *Group) *leastTime { return &leastTime{newWeights(g)} }

func (s *leastTime) Select(g *Group, r *Request) *Backend {
	bs, now := g.Backends, r.Now
	ws := s.w[:len(bs)]
	i := s.rot.next()
	// The best measured backend by score, and the best unmeasured one by
	// (inflight+1)/w, since its latency is known only at the end. Scores are
	// kept as a fraction num/w and compared by cross-multiplying, without a
	// division per backend. pos is the scan position, for ties between them.
	bestM, bestU, posM, posU := -1, -1, 0, 0
	var numM, wM, numU, wU float64
	minLat := time.Duration(math.MaxInt64)
	for k := range bs {
		if b := bs[i]; r.Usable(b) {
			load, w := float64(b.InFlight()+1), float64(ws[i])
			if s.slow {
				w = float64(b.EffectiveWeight(now))
			}
			if lat := b.Latency(); lat > 0 {
				minLat = min(minLat, lat)
				if num := load * float64(max(lat, latencyFloor)); bestM < 0 || num*wM < numM*w {
					bestM, numM, wM, posM = i, num, w, k
				}
			} else if bestU < 0 || load*wU < numU*w {
				bestU, numU, wU, posU = i, load, w, k
			}
		}
		if i++; i == len(bs) {
			i = 0
		}
	}
	switch {
	case bestU < 0 && bestM < 0:
		return nil
	case bestU < 0:
		return bs[bestM]
	case bestM < 0:
		return bs[bestU]
	}
	numU *= float64(max(minLat, latencyFloor))
	if a, b := numU*wM, numM*wU; a < b || (a == b && posU < posM) {
		return bs[bestU]
	}
	return bs[bestM]
}
