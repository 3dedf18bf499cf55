package proxy

import (
	"sync/atomic"
	"time"

	"github.com/shoal-lb/shoal/lb"
)

// queue holds requests of one pool that wait because every backend is at
// max_conns. Each release wakes one waiter; waiters also re-check every
// 20ms, so a backend that becomes ready is noticed without a release.
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

// atCapacity reports whether the pool failed to pick only because its
// usable backends are at max_conns, so that waiting can help.
func atCapacity(pool *lb.Pool, lr *lb.Request) bool {
	for _, b := range pool.Backends() {
		if b.State() == lb.StateReady && !b.PassiveDown(lr.Now) && b.InFlight() >= int64(pool.Settings.MaxConns) {
			return true
		}
	}
	return false
}
