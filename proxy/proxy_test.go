package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/shoal-lb/shoal/lb"
)

// proxyRig is a real balancer fed with static pools, and the proxy served
// on a loopback port.
type proxyRig struct {
	bl  *lb.Balancer
	px  *Proxy
	url string
}

func newProxyRig(t *testing.T, cfg Config) *proxyRig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	bl := lb.New(ctx, lb.Config{Log: zerolog.Nop(), ProbeInterval: 5 * time.Millisecond})
	cfg.Tables = bl
	cfg.Log = zerolog.Nop()
	px := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := px.Server(ServerConfig{})
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return &proxyRig{bl: bl, px: px, url: "http://" + ln.Addr().String()}
}

// update publishes pools and waits until every backend that is not
// stopping is ready.
func (r *proxyRig) update(t *testing.T, pools ...lb.PoolSpec) {
	t.Helper()
	r.bl.Update("file", pools)
	waitFor(t, 5*time.Second, "backends ready", func() bool {
		for _, p := range r.bl.Table().Pools {
			for _, b := range p.Backends() {
				if !b.Server().Stopping && b.State() != lb.StateReady {
					return false
				}
			}
		}
		return true
	})
}

func (r *proxyRig) backend(t *testing.T, pool, name string) *lb.Backend {
	t.Helper()
	for _, b := range r.bl.Table().Pools[pool].Backends() {
		if b.Name() == name {
			return b
		}
	}
	t.Fatalf("pool %s has no backend %s", pool, name)
	return nil
}

// testBackend is an httptest server that counts the requests it gets.
type testBackend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

// newTestBackend serves h, or its name when h is nil.
func newTestBackend(t *testing.T, name string, h http.HandlerFunc) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *testBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func (b *testBackend) server() lb.Server {
	return lb.Server{ID: "file:" + b.addr(), Name: b.name, Address: b.addr(), Source: "file"}
}

// hangUp is a backend handler that reads the request and closes the
// connection without answering.
func hangUp(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	c, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		c.Close()
	}
}

func pool(name string, set lb.Settings, backends ...*testBackend) lb.PoolSpec {
	ps := lb.PoolSpec{Name: name, Settings: set}
	for _, b := range backends {
		ps.Servers = append(ps.Servers, b.server())
	}
	return ps
}

// settings are the defaults with passive health off, so that a failing
// test backend stays in rotation unless a test wants otherwise.
func settings(opts ...func(*lb.Settings)) lb.Settings {
	s := lb.DefaultSettings()
	s.MaxFails = 0
	for _, o := range opts {
		o(&s)
	}
	return s
}

func do(t *testing.T, method, url, body string, hdr ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestErrorStatuses(t *testing.T) {
	r := newProxyRig(t, Config{BackendTimeout: 100 * time.Millisecond})
	ok := newTestBackend(t, "ok", nil)
	broken := newTestBackend(t, "broken", hangUp)
	slow := newTestBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	host := func(h string) func(*lb.Settings) { return func(s *lb.Settings) { s.Hosts = []string{h} } }
	r.update(t,
		pool("ok", settings(host("ok.test")), ok),
		pool("broken", settings(host("broken.test")), broken),
		pool("slow", settings(host("slow.test")), slow),
		lb.PoolSpec{Name: "empty", Settings: settings(host("empty.test"))},
	)
	cases := []struct {
		desc, host string
		code       int
		body       string
	}{
		{"served", "ok.test", 200, "ok"},
		{"no route", "nowhere.test", 404, "no pool serves this host and path"},
		{"no available backend names the pool", "empty.test", 503, `pool "empty" has no available backend`},
		{"backend hung up", "broken.test", 502, "the backend failed"},
		{"backend silent beyond BackendTimeout", "slow.test", 504, "did not answer in time"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			start := time.Now()
			code, body := do(t, "GET", r.url+"/", "", "Host", tc.host)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Fatalf("Host %s: %d %q, want %d containing %q", tc.host, code, body, tc.code, tc.body)
			}
			if tc.code == 504 && time.Since(start) > time.Second {
				t.Fatalf("504 after %v, want it after BackendTimeout (100ms)", time.Since(start))
			}
		})
	}
}

// attempts records which backends saw each request, by request ID.
type attempts struct {
	mu  sync.Mutex
	got map[string][]string
}

func (a *attempts) handler(name string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		if a.got == nil {
			a.got = map[string][]string{}
		}
		id := r.Header.Get("X-Req")
		a.got[id] = append(a.got[id], name)
		a.mu.Unlock()
		if h == nil {
			io.WriteString(w, name)
			return
		}
		h(w, r)
	}
}

func (a *attempts) of(id string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got[id]...)
}

func TestRetryGoesToADifferentBackend(t *testing.T) {
	r := newProxyRig(t, Config{})
	var a attempts
	var bs []*testBackend
	for i := 0; i < 4; i++ {
		n := fmt.Sprintf("b%d", i)
		bs = append(bs, newTestBackend(t, n, a.handler(n, hangUp)))
	}
	r.update(t, pool("p", settings(), bs...)) // retries auto: 4-1 = 3
	for i := 0; i < 20; i++ {
		id := fmt.Sprint(i)
		code, _ := do(t, "GET", r.url+"/", "", "X-Req", id)
		if code != 502 {
			t.Fatalf("request %s: status %d, want 502 when every backend fails", id, code)
		}
		got := a.of(id)
		seen := map[string]bool{}
		for _, n := range got {
			if seen[n] {
				t.Fatalf("request %s went twice to %s: %v", id, n, got)
			}
			seen[n] = true
		}
		if len(got) != 4 {
			t.Fatalf("request %s made %d attempts %v, want 1 + 3 retries", id, len(got), got)
		}
	}
}

func TestRetryRecovers(t *testing.T) {
	r := newProxyRig(t, Config{})
	broken := newTestBackend(t, "broken", hangUp)
	ok := newTestBackend(t, "ok", nil)
	r.update(t, pool("p", settings(), broken, ok))
	for i := 0; i < 10; i++ {
		if code, body := do(t, "GET", r.url+"/", ""); code != 200 || body != "ok" {
			t.Fatalf("GET %d: %d %q, want the retry on the healthy backend", i, code, body)
		}
	}
	if broken.hits.Load() == 0 {
		t.Fatal("the broken backend was never tried: the test proves nothing")
	}
}

func TestPOSTNotRetriedAfterReachingABackend(t *testing.T) {
	r := newProxyRig(t, Config{})
	var a attempts
	b1 := newTestBackend(t, "b1", a.handler("b1", hangUp))
	b2 := newTestBackend(t, "b2", a.handler("b2", hangUp))
	r.update(t, pool("p", settings(), b1, b2))
	for i := 0; i < 6; i++ {
		id := fmt.Sprint(i)
		code, _ := do(t, "POST", r.url+"/", "payload", "X-Req", id)
		if code != 502 {
			t.Fatalf("POST %s: %d, want 502", id, code)
		}
		if got := a.of(id); len(got) != 1 {
			t.Fatalf("POST %s reached %v: a POST that reached a backend must not be sent again", id, got)
		}
	}
}

func TestDialFailureRetriedWhateverTheMethod(t *testing.T) {
	r := newProxyRig(t, Config{})
	gone := newTestBackend(t, "gone", nil)
	ok := newTestBackend(t, "ok", nil)
	r.update(t, pool("p", settings(), gone, ok))
	gone.srv.Close() // ready, then its port closes: every dial is refused
	for _, m := range []string{"POST", "PATCH", "GET", "DELETE"} {
		for i := 0; i < 4; i++ {
			if code, body := do(t, m, r.url+"/", "x"); code != 200 || body != "ok" {
				t.Fatalf("%s %d: %d %q, want it retried on the live backend after the refused dial", m, i, code, body)
			}
		}
	}
}

func TestRetriesBounded(t *testing.T) {
	t.Run("by retries", func(t *testing.T) {
		r := newProxyRig(t, Config{})
		var a attempts
		var bs []*testBackend
		for i := 0; i < 5; i++ {
			n := fmt.Sprintf("b%d", i)
			bs = append(bs, newTestBackend(t, n, a.handler(n, hangUp)))
		}
		r.update(t, pool("p", settings(func(s *lb.Settings) { s.Retries = 1 }), bs...))
		do(t, "GET", r.url+"/", "", "X-Req", "x")
		if got := a.of("x"); len(got) != 2 {
			t.Fatalf("retries=1: %d attempts %v, want 2", len(got), got)
		}
	})
	t.Run("by retry_timeout", func(t *testing.T) {
		r := newProxyRig(t, Config{})
		var a attempts
		slowHangUp := func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(100 * time.Millisecond)
			hangUp(w, r)
		}
		var bs []*testBackend
		for i := 0; i < 6; i++ {
			n := fmt.Sprintf("b%d", i)
			bs = append(bs, newTestBackend(t, n, a.handler(n, slowHangUp)))
		}
		r.update(t, pool("p", settings(func(s *lb.Settings) {
			s.Retries = 5
			s.RetryTimeout = 150 * time.Millisecond
		}), bs...))
		do(t, "GET", r.url+"/", "", "X-Req", "x")
		if got := a.of("x"); len(got) != 2 {
			t.Fatalf("retry_timeout=150ms with 100ms attempts: %d attempts %v, want 2", len(got), got)
		}
	})
}

func TestHeaders(t *testing.T) {
	r := newProxyRig(t, Config{})
	echo := newTestBackend(t, "echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-End-To-End", "kept")
		h := map[string]any{"host": r.Host, "headers": r.Header}
		json.NewEncoder(w).Encode(h)
	})
	r.update(t, pool("p", settings(), echo))

	// Raw, so that the hop-by-hop headers go out exactly as written.
	c, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /x HTTP/1.1\r\n"+
		"Host: App.Example:8080\r\n"+
		"X-Forwarded-For: 203.0.113.7\r\n"+
		"Connection: keep-alive, X-Custom-Hop\r\n"+
		"X-Custom-Hop: secret\r\n"+
		"Keep-Alive: timeout=10\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Te: trailers\r\n"+
		"X-Kept: yes\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Host    string
		Headers http.Header
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(got.Host, "App.Example:8080") {
		t.Errorf("backend saw Host %q, want the client's", got.Host)
	}
	want := map[string]string{
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "App.Example:8080",
		"X-Kept":            "yes",
	}
	for k, v := range want {
		if g := got.Headers.Get(k); g != v {
			t.Errorf("backend saw %s %q, want %q", k, g, v)
		}
	}
	for _, k := range []string{"X-Custom-Hop", "Keep-Alive", "Proxy-Authorization", "Te"} {
		if g, ok := got.Headers[k]; ok {
			t.Errorf("hop-by-hop header %s reached the backend: %q", k, g)
		}
	}
	if c := got.Headers.Get("Connection"); c != "" && !strings.EqualFold(c, "keep-alive") {
		t.Errorf("backend saw Connection %q", c)
	}
	if resp.Header.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end response header lost: %v", resp.Header)
	}
	for _, k := range []string{"X-Resp-Hop", "Keep-Alive"} {
		if g := resp.Header.Get(k); g != "" {
			t.Errorf("hop-by-hop response header %s reached the client: %q", k, g)
		}
	}
}

// TestHostKeptVerbatim: the backend gets the client's Host byte for byte, as
// with the stdlib's ReverseProxy. fasthttp rewrites the Host header from the
// parsed URI, which it lower-cases, unless Request.UseHostHeader is set.
func TestHostKeptVerbatim(t *testing.T) {
	r := newProxyRig(t, Config{})
	echo := newTestBackend(t, "echo", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Host) })
	r.update(t, pool("p", settings(), echo))
	for _, host := range []string{"App.Example:8080", "api.example.com", "MiXeD.example"} {
		if code, got := do(t, "GET", r.url+"/", "", "Host", host); code != 200 || got != host {
			t.Errorf("client sent Host %q, backend saw %q (status %d)", host, got, code)
		}
	}
}

// blocker is a backend whose /block requests wait until released.
type blocker struct {
	*testBackend
	in      chan struct{}
	release chan struct{}
}

func newBlocker(t *testing.T, name string) *blocker {
	b := &blocker{in: make(chan struct{}, 100), release: make(chan struct{})}
	b.testBackend = newTestBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			b.in <- struct{}{}
			<-b.release
		}
		io.WriteString(w, name)
	})
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
	})
	return b
}

type result struct {
	code int
	body string
	took time.Duration
}

// async sends a GET in the background.
func async(t *testing.T, url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		start := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			ch <- result{code: -1, body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- result{resp.StatusCode, string(b), time.Since(start)}
	}()
	return ch
}

func TestMaxConnsQueue(t *testing.T) {
	setup := func(t *testing.T, queue int, timeout time.Duration) (*proxyRig, *blocker) {
		r := newProxyRig(t, Config{})
		b := newBlocker(t, "b")
		r.update(t, pool("p", settings(func(s *lb.Settings) {
			s.MaxConns = 1
			s.Queue = queue
			s.QueueTimeout = timeout
		}), b.testBackend))
		return r, b
	}
	queued := func(r *proxyRig) int64 { return r.px.queueFor("p").waiting.Load() }

	t.Run("503 after queue_timeout", func(t *testing.T) {
		r, b := setup(t, 10, 200*time.Millisecond)
		first := async(t, r.url+"/block")
		<-b.in
		got := <-async(t, r.url+"/")
		if got.code != 503 || !strings.Contains(got.body, "queue_timeout") || !strings.Contains(got.body, `"p"`) {
			t.Fatalf("queued request: %d %q, want 503 naming pool p and queue_timeout", got.code, got.body)
		}
		if got.took < 200*time.Millisecond || got.took > 2*time.Second {
			t.Fatalf("503 after %v, want after queue_timeout (200ms)", got.took)
		}
		close(b.release)
		if r := <-first; r.code != 200 {
			t.Fatalf("the request holding the slot: %d %q", r.code, r.body)
		}
	})

	t.Run("served when a slot frees", func(t *testing.T) {
		r, b := setup(t, 10, 5*time.Second)
		first := async(t, r.url+"/block")
		<-b.in
		second := async(t, r.url+"/")
		waitFor(t, 5*time.Second, "the second request to queue", func() bool { return queued(r) == 1 })
		close(b.release)
		if got := <-first; got.code != 200 {
			t.Fatalf("first: %d %q", got.code, got.body)
		}
		got := <-second
		if got.code != 200 || got.body != "b" {
			t.Fatalf("queued request: %d %q, want 200 once the slot freed", got.code, got.body)
		}
		if got.took > 2*time.Second {
			t.Fatalf("queued request served after %v, want soon after the slot freed", got.took)
		}
	})

	t.Run("queue full is 503 at once", func(t *testing.T) {
		r, b := setup(t, 1, 5*time.Second)
		first := async(t, r.url+"/block")
		<-b.in
		second := async(t, r.url+"/")
		waitFor(t, 5*time.Second, "the second request to queue", func() bool { return queued(r) == 1 })
		got := <-async(t, r.url+"/")
		if got.code != 503 || !strings.Contains(got.body, "queue is full") {
			t.Fatalf("third request with the queue full: %d %q, want 503 queue is full", got.code, got.body)
		}
		if got.took > time.Second {
			t.Fatalf("queue full answered after %v, want at once", got.took)
		}
		close(b.release)
		<-first
		if got := <-second; got.code != 200 {
			t.Fatalf("queued request: %d %q", got.code, got.body)
		}
	})
}

func TestBackupOnlyWhenNoPrimary(t *testing.T) {
	r := newProxyRig(t, Config{})
	p1 := newTestBackend(t, "p1", nil)
	p2 := newTestBackend(t, "p2", nil)
	bk := newTestBackend(t, "backup", nil)
	ps := pool("p", settings(), p1, p2, bk)
	ps.Servers[2].Backup = true
	r.update(t, ps)
	count := func(n int) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			code, body := do(t, "GET", r.url+"/", "")
			if code != 200 {
				t.Fatalf("GET: %d %q", code, body)
			}
			got[body]++
		}
		return got
	}
	if got := count(20); got["backup"] != 0 || got["p1"] == 0 || got["p2"] == 0 {
		t.Fatalf("with both primaries up: %v, want no backup traffic", got)
	}
	drain := func(name string, on bool) {
		b := r.backend(t, "p", name)
		if err := r.bl.Drain("p", b.ID, on); err != nil {
			t.Fatal(err)
		}
	}
	drain("p1", true)
	if got := count(10); got["backup"] != 0 || got["p2"] != 10 {
		t.Fatalf("with one primary up: %v, want all on p2", got)
	}
	drain("p2", true)
	if got := count(10); got["backup"] != 10 {
		t.Fatalf("with no primary: %v, want all on the backup", got)
	}
	drain("p1", false)
	if got := count(10); got["p1"] != 10 {
		t.Fatalf("with a primary back: %v, want all on p1", got)
	}
}

func TestDrainFinishesInFlight(t *testing.T) {
	r := newProxyRig(t, Config{})
	slow := newBlocker(t, "slow")
	other := newTestBackend(t, "other", nil)
	r.update(t, pool("p", settings(func(s *lb.Settings) { s.Method = lb.MethodLeastConn }), slow.testBackend, other))
	var inflight <-chan result
	for i := 0; i < 4 && inflight == nil; i++ {
		ch := async(t, r.url+"/block")
		select {
		case <-slow.in:
			inflight = ch
		case res := <-ch: // went to "other"
			if res.code != 200 {
				t.Fatalf("GET: %d %q", res.code, res.body)
			}
		}
	}
	if inflight == nil {
		t.Fatal("no request reached the slow backend")
	}
	if err := r.bl.Drain("p", slow.server().ID, true); err != nil {
		t.Fatal(err)
	}
	before := slow.hits.Load()
	for i := 0; i < 10; i++ {
		if code, body := do(t, "GET", r.url+"/", ""); code != 200 || body != "other" {
			t.Fatalf("after the drain: %d %q, want all on the other backend", code, body)
		}
	}
	if slow.hits.Load() != before {
		t.Fatal("the draining backend got new requests")
	}
	close(slow.release)
	if got := <-inflight; got.code != 200 || got.body != "slow" {
		t.Fatalf("the in-flight request on the draining backend: %d %q, want it to finish", got.code, got.body)
	}
}
