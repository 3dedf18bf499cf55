package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/lb"
	"github.com/valyala/fasthttp"
)

// reqState is the per-request scratch space, pooled so that the request
// path does not allocate.
type reqState struct {
	lr      lb.Request
	tried   [4]*lb.Backend
	keyBuf  [16]byte
	addrBuf [64]byte
}

// ServeFastHTTP proxies one request.
func (p *Proxy) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	req := &ctx.Request
	pool := p.cfg.Tables.Table().Route(req.Header.Host(), ctx.Path())
	if pool == nil {
		p.finish(ctx, start, nil, nil, errNoRoute, false)
		return
	}
	st := p.states.Get().(*reqState)
	defer func() {
		st.lr = lb.Request{}
		st.tried = [4]*lb.Backend{}
		p.states.Put(st)
	}()
	peer := clientAddr(ctx.RemoteAddr(), req.Header.Peek("X-Forwarded-For"), p.cfg.TrustedProxies)
	st.lr.Key = hashKey(ctx, pool.Settings, peer, &st.keyBuf)
	fallback := st.lr.Key == nil && (pool.Settings.Method == lb.MethodHash || pool.Settings.Method == lb.MethodIPHash)
	st.lr.Tried = st.tried[:0]

	upgrade := req.Header.ConnectionUpgrade() && len(req.Header.Peek("Upgrade")) > 0
	p.forwardedHeaders(ctx, &st.addrBuf)
	if upgrade {
		b, err := p.serveUpgrade(ctx, pool, &st.lr)
		p.finish(ctx, start, pool, b, err, fallback)
		return
	}
	req.UseHostHeader = true // keep the client's Host, byte for byte
	clientClose := req.Header.ConnectionClose()
	stripHopByHop(&req.Header)
	req.Header.ResetConnectionClose()

	// Attempts on backends taken only because nothing better was left
	// (stopping containers, passive-down backends) do not use up the
	// retries: the retry_timeout and the tried list bound them.
	deadline := start.Add(pool.Settings.RetryTimeout)
	retries := pool.MaxRetries()
	var b, failed *lb.Backend
	var err, lastErr error
	var relaxed bool
	for attempt := 0; ; {
		st.lr.Now = time.Now().UnixNano()
		pool, b, relaxed, err = p.pick(pool, &st.lr)
		if b == nil {
			if failed != nil && lastErr != nil && errors.Is(err, errNoBackend) {
				b, err = failed, lastErr // say what the last backend did, not that none was left
			}
			break
		}
		err = p.forward(ctx, pool, b)
		if err == nil || time.Now().After(deadline) || !retryable(err, req) {
			break
		}
		if !relaxed {
			if attempt++; attempt > retries {
				break
			}
		}
		failed, lastErr = b, err
		st.lr.Tried = append(st.lr.Tried, b)
		ctx.Response.Reset()
		if p.cfg.Observer != nil {
			p.cfg.Observer.Retry(pool)
		}
	}
	if clientClose {
		ctx.SetConnectionClose()
	}
	p.finish(ctx, start, pool, b, err, fallback)
}

// retryable reports whether a failed attempt may go to another backend: a
// request that never reached a backend always may; an idempotent one may when
// its body can be sent again.
func retryable(err error, req *fasthttp.Request) bool {
	if isDial(err) {
		return true
	}
	return idempotent(req.Header.Method()) && !req.IsBodyStream()
}

// pick selects a backend. When none is available it relaxes, in order:
// backends that passive health took out (as NGINX does when a whole upstream
// failed), then containers that are stopping but still serve. When that
// finds none either but one is starting or at max_conns, or the pool just
// lost its last backend, it waits in the pool's queue. Only then is the
// answer 503. It returns the pool it picked from, which is the current one
// after a wait.
func (p *Proxy) pick(pool *lb.Pool, lr *lb.Request) (*lb.Pool, *lb.Backend, bool, error) {
	if b, relaxed := p.pickRelaxed(pool, lr); b != nil {
		return pool, b, relaxed, nil
	}
	if !worthWaiting(pool) {
		// The snapshot may be older than what discovery knows now.
		cur := p.cfg.Tables.Table().Pools[pool.Name]
		if cur == nil || cur == pool || !worthWaiting(cur) {
			return pool, nil, false, errNoBackend
		}
	}
	return p.queueFor(pool.Name).wait(p, pool, lr)
}

// pickRelaxed is pool.Pick, relaxed step by step when it finds nothing; it
// reports whether it had to relax.
func (p *Proxy) pickRelaxed(pool *lb.Pool, lr *lb.Request) (*lb.Backend, bool) {
	if b := pool.Pick(lr); b != nil {
		return b, false
	}
	for _, relax := range [...]lb.Relax{lb.RelaxPassive, lb.RelaxPassive | lb.RelaxDraining} {
		lr.Relax = relax
		b := pool.Pick(lr)
		lr.Relax = 0
		if b != nil {
			return b, true
		}
	}
	return nil, false
}

// forward sends the request to b once and fills ctx.Response.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, pool *lb.Pool, b *lb.Backend) error {
	hc := p.client(b)
	resp := fasthttp.AcquireResponse()
	b.Acquire()
	t0 := time.Now()
	err := hc.Do(&ctx.Request, resp)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		p.release(pool, b, 0)
		// A pooled connection that the backend closed or reset while it was
		// idle says nothing about the backend's health; a dead backend shows
		// on the next dial.
		if !isConnDrop(err) {
			b.ReportFailure(time.Now())
		}
		return err
	}
	ttfb := time.Since(t0)
	if resp.StatusCode() >= 500 && pool.Settings.FailOn5xx {
		b.ReportFailure(time.Now())
	}
	out := &ctx.Response
	resp.Header.CopyTo(&out.Header)
	stripHopByHopResponse(&out.Header)
	measureLast := pool.Settings.LeastTimeMeasure == "last_byte"

	body := resp.BodyStream()
	if body == nil { // no body: HEAD, 204, 304
		fasthttp.ReleaseResponse(resp)
		p.release(pool, b, ttfb)
		return nil
	}
	n := resp.Header.ContentLength()
	if n >= 0 && n <= p.cfg.BufferLimit {
		out.ResetBody()
		buf := copyBufs.Get().(*[]byte)
		_, err = io.CopyBuffer(out.BodyWriter(), body, *buf)
		copyBufs.Put(buf)
		resp.CloseBodyStream()
		fasthttp.ReleaseResponse(resp)
		if err != nil {
			out.Reset()
			p.release(pool, b, 0)
			b.ReportFailure(time.Now())
			return err
		}
		d := ttfb
		if measureLast {
			d = time.Since(t0)
		}
		p.release(pool, b, d)
		return nil
	}
	out.SetBodyStream(&streamBody{r: body, resp: resp, p: p, pool: pool, b: b, t0: t0, ttfb: ttfb, last: measureLast}, n)
	return nil
}

// copyBufs holds the buffers that small response bodies are read through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// release ends an attempt on b and wakes a queued request, if any.
func (p *Proxy) release(pool *lb.Pool, b *lb.Backend, d time.Duration) {
	b.Release(d)
	if pool.Settings.MaxConns > 0 {
		p.queueFor(pool.Name).wake()
	}
}

// streamBody streams a backend's response to the client and ends the
// attempt when the server closes it after the last byte.
type streamBody struct {
	r    io.Reader
	resp *fasthttp.Response
	p    *Proxy
	pool *lb.Pool
	b    *lb.Backend
	t0   time.Time
	ttfb time.Duration
	last bool
	done bool
}

func (s *streamBody) Read(b []byte) (int, error) { return s.r.Read(b) }

func (s *streamBody) Close() error {
	if s.done {
		return nil
	}
	s.done = true
	err := s.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(s.resp)
	d := s.ttfb
	if s.last {
		d = time.Since(s.t0)
	}
	s.p.release(s.pool, s.b, d)
	return err
}

// finish writes the error response, if any, then the access log and the
// observer.
func (p *Proxy) finish(ctx *fasthttp.RequestCtx, start time.Time, pool *lb.Pool, b *lb.Backend, err error, fallback bool) {
	name := ""
	if pool != nil {
		name = pool.Name
	}
	if err != nil {
		status := statusFor(err)
		ctx.Response.Reset()
		ctx.SetStatusCode(status)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString(errorText(err, name))
		if status != fasthttp.StatusNotFound {
			if e := p.log.Debug(); e.Enabled() {
				e.Err(err).Str("pool", name).Msg("request failed")
			}
		}
	}
	d := time.Since(start)
	status := ctx.Response.StatusCode()
	if p.cfg.Observer != nil {
		p.cfg.Observer.Request(pool, b, status, d)
	}
	if p.cfg.AccessLog == nil {
		return
	}
	e := p.cfg.AccessLog.Info().
		Bytes("method", ctx.Method()).
		Bytes("host", ctx.Host()).
		Bytes("path", ctx.Path()).
		Int("status", status).
		Int("bytes", ctx.Response.Header.ContentLength()).
		Dur("duration", d).
		Str("pool", name)
	if b != nil {
		e = e.Str("backend", b.Name())
	}
	if fallback {
		e = e.Bool("hash_fallback", true)
	}
	if err != nil {
		e = e.Str("error", err.Error())
	}
	e.Msg("")
}

// hashKey extracts the key the pool hashes on, or nil when the request has
// none (the pool then falls back to round robin).
func hashKey(ctx *fasthttp.RequestCtx, s *lb.Settings, client netip.Addr, buf *[16]byte) []byte {
	switch s.Method {
	case lb.MethodIPHash:
		return ipHashKey(client, buf)
	case lb.MethodHash:
	default:
		return nil
	}
	var v []byte
	switch k := s.HashKey; {
	case k == "path":
		v = ctx.Path()
	case k == "uri":
		v = ctx.RequestURI()
	case k == "remote_addr":
		if client.IsValid() {
			b := client.As16()
			copy(buf[:], b[:])
			v = buf[:]
		}
	case strings.HasPrefix(k, "header:"):
		v = ctx.Request.Header.Peek(k[len("header:"):])
	case strings.HasPrefix(k, "cookie:"):
		v = ctx.Request.Header.Cookie(k[len("cookie:"):])
	case strings.HasPrefix(k, "query:"):
		v = ctx.QueryArgs().Peek(k[len("query:"):])
	}
	if len(v) == 0 {
		return nil
	}
	return v
}

// forwardedHeaders appends the TCP peer to X-Forwarded-For and sets
// X-Forwarded-Proto and X-Forwarded-Host.
func (p *Proxy) forwardedHeaders(ctx *fasthttp.RequestCtx, buf *[64]byte) {
	h := &ctx.Request.Header
	var peer netip.Addr
	if a, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok {
		peer = a.Unmap()
	}
	ip := peer.AppendTo(buf[:0])
	if prev := h.Peek("X-Forwarded-For"); len(prev) > 0 {
		v := make([]byte, 0, len(prev)+2+len(ip))
		v = append(append(append(v, prev...), ", "...), ip...)
		h.SetBytesV("X-Forwarded-For", v)
	} else {
		h.SetBytesV("X-Forwarded-For", ip)
	}
	h.Set("X-Forwarded-Proto", "http")
	h.SetBytesV("X-Forwarded-Host", h.Host())
}

// hopHeaders are removed in both directions (RFC 9110 7.6.1), with any
// header named in Connection.
var hopHeaders = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

func stripHopByHop(h *fasthttp.RequestHeader) {
	if c := h.Peek("Connection"); len(c) > 0 {
		for _, name := range bytes.Split(c, []byte(",")) {
			if name = bytes.TrimSpace(name); len(name) > 0 && !bytes.EqualFold(name, []byte("close")) && !bytes.EqualFold(name, []byte("keep-alive")) {
				h.DelBytes(name)
			}
		}
		h.Del("Connection")
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

func stripHopByHopResponse(h *fasthttp.ResponseHeader) {
	if c := h.Peek("Connection"); len(c) > 0 {
		for _, name := range bytes.Split(c, []byte(",")) {
			if name = bytes.TrimSpace(name); len(name) > 0 && !bytes.EqualFold(name, []byte("close")) && !bytes.EqualFold(name, []byte("keep-alive")) {
				h.DelBytes(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	h.Del("Connection")
	h.ResetConnectionClose()
}
