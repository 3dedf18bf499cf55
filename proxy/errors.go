package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/valyala/fasthttp"
)

// Errors the data plane maps to statuses; see statusFor.
var (
	errNoRoute   = errors.New("no pool serves this host and path")
	errNoBackend = errors.New("no backend available")
	errQueueFull = errors.New("every backend is at max_conns and the queue is full")
	errQueueWait = errors.New("no backend became available within queue_timeout")
)

// statusFor is the one place that maps a proxying error to the status the
// client gets: 404 no route, 503 no backend (or the queue gave up), 504 the
// backend timed out, 502 anything else the backend did wrong.
func statusFor(err error) int {
	switch {
	case errors.Is(err, errNoRoute):
		return fasthttp.StatusNotFound
	case errors.Is(err, errNoBackend), errors.Is(err, errQueueFull), errors.Is(err, errQueueWait):
		return fasthttp.StatusServiceUnavailable
	case isTimeout(err):
		return fasthttp.StatusGatewayTimeout
	}
	return fasthttp.StatusBadGateway
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !isDial(err)
}

// isDial reports whether err happened before any byte of the request was
// written: the connection could not be made.
func isDial(err error) bool {
	if errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, fasthttp.ErrNoFreeConns) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// isConnDrop reports whether err is an established connection that the
// backend closed or reset: what a keep-alive connection looks like when the
// backend closed it while it sat idle in the pool.
func isConnDrop(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// errorText says what happened in words a user can act on.
func errorText(err error, pool string) string {
	switch statusFor(err) {
	case fasthttp.StatusNotFound:
		return "404 not found: no pool serves this host and path\n"
	case fasthttp.StatusServiceUnavailable:
		if errors.Is(err, errNoBackend) {
			return "503 service unavailable: pool \"" + pool + "\" has no available backend\n"
		}
		return "503 service unavailable: pool \"" + pool + "\" has no available backend: " + err.Error() + "\n"
	case fasthttp.StatusGatewayTimeout:
		return "504 gateway timeout: the backend did not answer in time\n"
	}
	return "502 bad gateway: the backend failed\n"
}
