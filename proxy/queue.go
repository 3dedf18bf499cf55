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

func (q *queue) wait(pool *lb.Pool, lr *lb.Request) (*lb.Backend, error) {
	if q.waiting.Add(1) > int64(pool.Settings.Queue) {
		q.waiting.Add(-1)
		return nil, errQueueFull
	}
	defer q.waiting.Add(-1)
	timeout := time.NewTimer(pool.Settings.QueueTimeout)
	defer timeout.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case <-timeout.C:
			return nil, errQueueWait
		case <-q.ch:
		case <-poll.C:
		}
		lr.Now = time.Now().UnixNano()
		if b := pool.Pick(lr); b != nil {
			return b, nil
		}
	}
}

// worthWaiting reports whether a pool that has no backend to give now may
// have one soon: one is starting (a scale-up, a restart) or at max_conns.
func worthWaiting(pool *lb.Pool, lr *lb.Request) bool {
	for _, b := range pool.Primary.Backends {
		if waitable(pool, b) {
			return true
		}
	}
	for _, b := range pool.Backup.Backends {
		if waitable(pool, b) {
			return true
		}
	}
	return false
}

func waitable(pool *lb.Pool, b *lb.Backend) bool {
	switch b.State() {
	case lb.StateStarting:
		return true
	case lb.StateReady:
		m := pool.Settings.MaxConns
		return m > 0 && b.InFlight() >= int64(m)
	}
	return false
}
