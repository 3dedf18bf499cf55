package proxy

import (
	"sync/atomic"
	"time"

	"github.com/shoal-lb/shoal/lb"
)

// queue holds requests of one pool that wait because every backend is at
// max_conns or still starting. Each release wakes one waiter; waiters also
// re-check every 20ms, so a backend that becomes ready is noticed without a
// release. The queue is bounded by the pool's queue and queue_timeout.
type queue struct {
	waiting atomic.Int64
	ch      chan struct{}
}

func (p *Proxy) queueFor(pool string) *queue {
	if q, ok := p.queues.Load(pool); ok {
		return q.(*queue)
	}
	q, _ := p.queues.LoadOrStore(pool, &queue{ch: make(chan struct{}, 1)})
	return q.(*queue)
}

func (q *queue) wake() {
	if q.waiting.Load() == 0 {
		return
	}
	select {
	case q.ch <- struct{}{}:
	default:
	}
}

// wait parks the request until a backend of the pool can take it, for at
// most the pool's queue_timeout. It looks the pool up in the current table
// on every try, so that backends discovered meanwhile count; it returns the
// pool it picked from and whether the pick was relaxed.
func (q *queue) wait(p *Proxy, pool *lb.Pool, lr *lb.Request) (*lb.Pool, *lb.Backend, bool, error) {
	if q.waiting.Add(1) > int64(pool.Settings.Queue) {
		q.waiting.Add(-1)
		return pool, nil, false, errQueueFull
	}
	defer q.waiting.Add(-1)
	timeout := time.NewTimer(pool.Settings.QueueTimeout)
	defer timeout.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	name := pool.Name
	for {
		select {
		case <-timeout.C:
			return pool, nil, false, errQueueWait
		case <-q.ch:
		case <-poll.C:
		}
		if cur := p.cfg.Tables.Table().Pools[name]; cur != nil {
			pool = cur
		}
		lr.Now = time.Now().UnixNano()
		if b, relaxed := p.pickRelaxed(pool, lr); b != nil {
			return pool, b, relaxed, nil
		}
		// A ready backend is worth a second try after a wait even if this
		// request tried it before (a container that was restarting then):
		// otherwise a request whose every backend once failed would wait
		// out queue_timeout next to ready backends. Stopping and
		// passive-down backends are not tried twice.
		tried := lr.Tried
		lr.Tried = nil
		b := pool.Pick(lr)
		lr.Tried = tried
		if b != nil {
			return pool, b, false, nil
		}
	}
}

// worthWaiting reports whether a pool that has no backend to give now may
// have one within queue_timeout: it has backends at all (starting,
// restarting, stopping, at max_conns, or down but checked again), or it lost
// its last backend a moment ago (every replica restarting). Only a pool that
// never had a backend answers 503 at once.
func worthWaiting(pool *lb.Pool) bool {
	return pool.Emptied || pool.Len() > 0
}
