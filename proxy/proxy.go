// Package proxy is Shoal's data plane: it routes each request to a pool,
// picks a backend, forwards the request over pooled keep-alive connections,
// retries on another backend when that is safe, and maps failures to
// statuses. It is built on fasthttp for the HTTP/1.1 path; see README.
package proxy

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/shoal-lb/shoal/lb"
	"github.com/valyala/fasthttp"
)

// Tables gives the current routing snapshot; *lb.Balancer implements it.
type Tables interface {
	Table() *lb.Table
}

// Config configures a Proxy. Zero values take the documented defaults.
type Config struct {
	Tables Tables
	Log    zerolog.Logger
	// AccessLog receives one line per request; nil turns the access log off.
	AccessLog *zerolog.Logger
	// Observer is told about every request, e.g. for metrics; nil means none.
	Observer Observer
	// TrustedProxies are the peers whose X-Forwarded-For is believed for the
	// client address (ip_hash, remote_addr). Default: none.
	TrustedProxies []netip.Prefix
	// ConnectTimeout bounds dialing a backend; default 2s.
	ConnectTimeout time.Duration
	// BackendTimeout is the longest silence allowed while reading from a
	// backend, between two reads, as NGINX's proxy_read_timeout; default 60s.
	// A backend that exceeds it gets 504.
	BackendTimeout time.Duration
	// IdleConnTimeout closes idle keep-alive connections to backends; default 30s.
	IdleConnTimeout time.Duration
	// MaxConnsPerBackend caps the open connections to one backend; default 4096.
	MaxConnsPerBackend int
	// BufferLimit: responses with a Content-Length up to this size are read
	// whole before they are sent, which frees the backend connection at once;
	// larger and chunked responses are streamed. Default 64 KiB.
	BufferLimit int
}

// Proxy is the request handler. Use New.
type Proxy struct {
	cfg    Config
	log    zerolog.Logger
	queues sync.Map // pool name -> *queue
	states sync.Pool
}

// New returns a proxy over cfg.Tables.
func New(cfg Config) *Proxy {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 2 * time.Second
	}
	if cfg.BackendTimeout <= 0 {
		cfg.BackendTimeout = 60 * time.Second
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 30 * time.Second
	}
	if cfg.MaxConnsPerBackend <= 0 {
		cfg.MaxConnsPerBackend = 4096
	}
	if cfg.BufferLimit <= 0 {
		cfg.BufferLimit = 64 << 10
	}
	p := &Proxy{cfg: cfg, log: cfg.Log.With().Str("component", "proxy").Logger()}
	p.states.New = func() any { return new(reqState) }
	return p
}

// ServerConfig hardens the client-facing server. Zero values take defaults.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's header; default 10s.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body once its header is in;
	// default 10m, so that large uploads stream.
	BodyTimeout time.Duration
	// IdleTimeout closes idle client keep-alive connections; default 90s.
	IdleTimeout time.Duration
	// MaxHeaderBytes limits the request header; larger gets 431. Default 16 KiB.
	MaxHeaderBytes int
}

// Server returns the client-facing HTTP server for p.
func (p *Proxy) Server(sc ServerConfig) *fasthttp.Server {
	if sc.ReadHeaderTimeout <= 0 {
		sc.ReadHeaderTimeout = 10 * time.Second
	}
	if sc.BodyTimeout <= 0 {
		sc.BodyTimeout = 10 * time.Minute
	}
	if sc.IdleTimeout <= 0 {
		sc.IdleTimeout = 90 * time.Second
	}
	if sc.MaxHeaderBytes <= 0 {
		sc.MaxHeaderBytes = 16 << 10
	}
	return &fasthttp.Server{
		Handler:                      p.ServeFastHTTP,
		ReadTimeout:                  sc.ReadHeaderTimeout,
		IdleTimeout:                  sc.IdleTimeout,
		ReadBufferSize:               sc.MaxHeaderBytes,
		WriteBufferSize:              16 << 10,
		StreamRequestBody:            true,
		MaxRequestBodySize:           1 << 40,
		NoDefaultServerHeader:        true,
		NoDefaultDate:                true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		DisablePreParseMultipartForm: true,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: sc.BodyTimeout}
		},
		Logger: fasthttpLogger{p.log},
	}
}

type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	if e := l.log.Debug(); e.Enabled() {
		e.Msgf(format, args...)
	}
}

// client returns the pooled keep-alive client of a backend. It is kept on
// the backend itself: a container that gets a removed one's IP address
// starts with fresh connections.
func (p *Proxy) client(b *lb.Backend) *fasthttp.HostClient {
	if c, ok := b.Transport().(*fasthttp.HostClient); ok {
		return c
	}
	idle := p.cfg.BackendTimeout
	hc := &fasthttp.HostClient{
		Addr:                          b.Address(),
		MaxConns:                      p.cfg.MaxConnsPerBackend,
		MaxIdleConnDuration:           p.cfg.IdleConnTimeout,
		MaxIdemponentCallAttempts:     1,        // retries are Shoal's, on another backend
		ReadBufferSize:                16 << 10, // 64 KiB measured no faster within the noise, and costs RSS
		WriteBufferSize:               16 << 10,
		NoDefaultUserAgentHeader:      true,
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		StreamResponseBody:            true,
		ConnPoolStrategy:              fasthttp.LIFO,
		DialTimeout: func(addr string, _ time.Duration) (net.Conn, error) {
			c, err := net.DialTimeout("tcp", addr, p.cfg.ConnectTimeout)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: idle}, nil
		},
	}
	return b.SetTransport(hc).(*fasthttp.HostClient)
}

// idleConn sets a read deadline before every read, so that a backend gets
// 504 after BackendTimeout of silence, but a long stream that keeps sending
// (SSE, downloads) is never cut.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(b)
}

func idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}
