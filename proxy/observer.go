package proxy

import (
	"time"

	"github.com/shoal-lb/shoal/lb"
)

// Observer is told about every proxied request; the admin metrics implement
// it. It is called on the request path, so it must be cheap and never block.
type Observer interface {
	// Request reports a finished request. b is nil when no backend was
	// picked (404, 503); status is what the client got.
	Request(pool *lb.Pool, b *lb.Backend, status int, d time.Duration)
	// Retry reports an attempt that is retried on another backend.
	Retry(pool *lb.Pool)
}
