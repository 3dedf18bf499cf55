package lb

import (
	"context"
	"net/http"
	"time"
)

// watch owns a backend's health for its lifetime: first the readiness probe,
// then, when the pool has a health path, the active check loop. It ends when
// ctx is cancelled, which happens when the backend is removed.
func (bl *Balancer) watch(ctx context.Context, b *Backend) {
	defer func() {
		if r := recover(); r != nil {
			bl.log.Error().Interface("panic", r).Str("backend", b.Name()).Msg("health watcher panicked")
		}
	}()
	if !bl.probePort(ctx, b) {
		return
	}
	b.portOpen.Store(true)
	b.update()
	hc := b.settings.Load().Health
	if hc.Path == "" {
		return
	}
	bl.activeLoop(ctx, b, hc)
}

// probePort dials the backend at once, then every ProbeInterval, until the
// port accepts a connection. After ProbeFastFor it warns once and slows to
// once a second. It returns false when ctx ends first.
func (bl *Balancer) probePort(ctx context.Context, b *Backend) bool {
	start := time.Now()
	warned := false
	for {
		c, err := dialer.DialContext(ctx, "tcp", b.Address())
		if err == nil {
			c.Close()
			if warned {
				bl.log.Info().Str("pool", b.Pool).Str("backend", b.Name()).Msg("backend port now accepts connections")
			}
			return true
		}
		wait := bl.cfg.ProbeInterval
		if time.Since(start) > bl.cfg.ProbeFastFor {
			wait = time.Second
			if !warned {
				warned = true
				bl.log.Warn().Str("pool", b.Pool).Str("backend", b.Name()).Str("address", b.Address()).
					Dur("waited", time.Since(start)).Err(err).Msg("backend port does not accept connections; it gets no traffic until it does")
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// activeLoop runs the active check at once and then every interval. The
// first pass makes the backend ready; Fails consecutive failures take it
// down, Passes consecutive passes bring it back.
func (bl *Balancer) activeLoop(ctx context.Context, b *Backend, hc HealthCheck) {
	passes, fails := 0, 0
	tick := time.NewTicker(hc.Interval)
	defer tick.Stop()
	for {
		ok := bl.check(ctx, b, hc)
		if ctx.Err() != nil {
			return
		}
		if bl.cfg.OnHealthCheck != nil {
			bl.cfg.OnHealthCheck(b, ok)
		}
		if ok {
			passes, fails = passes+1, 0
			if !b.activeReady.Load() || (b.activeDown.Load() && passes >= hc.Passes) {
				b.activeReady.Store(true)
				b.activeDown.Store(false)
				b.update()
			}
		} else {
			passes, fails = 0, fails+1
			if b.activeReady.Load() && !b.activeDown.Load() && fails >= hc.Fails {
				b.activeDown.Store(true)
				b.update()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (bl *Balancer) check(ctx context.Context, b *Backend, hc HealthCheck) bool {
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.Address()+hc.Path, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", "shoal-health-check")
	resp, err := bl.cfg.HealthClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= hc.StatusLo && resp.StatusCode <= hc.StatusHi
}
