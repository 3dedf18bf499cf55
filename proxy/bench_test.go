package proxy

import (
	"context"
	"net"
	"runtime"
	"testing"

	"github.com/rs/zerolog"
	"github.com/shoal-lb/shoal/lb"
	"github.com/valyala/fasthttp"
)

// benchBackend serves a small fixed body on loopback.
func benchBackend(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("hello from backend") }}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// benchBalancer returns a balancer with one ready pool over addrs.
func benchBalancer(b *testing.B, addrs ...string) *lb.Balancer {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	bl := lb.New(ctx, lb.Config{Log: zerolog.Nop()})
	var servers []lb.Server
	for _, a := range addrs {
		servers = append(servers, lb.Server{ID: "file:" + a, Name: a, Address: a, Weight: 1, Source: "file"})
	}
	bl.Update("file", []lb.PoolSpec{{Name: "api", Settings: lb.DefaultSettings(), Servers: servers}})
	for {
		ready := 0
		for _, be := range bl.Table().Pools["api"].Backends() {
			if be.State() == lb.StateReady {
				ready++
			}
		}
		if ready == len(addrs) {
			return bl
		}
		runtime.Gosched()
	}
}

// BenchmarkHandler measures the whole request path in process: routing,
// selection, header rewriting and forwarding over a pooled keep-alive
// connection to a loopback backend.
func BenchmarkHandler(b *testing.B) {
	bl := benchBalancer(b, benchBackend(b), benchBackend(b), benchBackend(b))
	p := New(Config{Tables: bl, Log: zerolog.Nop()})
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		var req fasthttp.Request
		for pb.Next() {
			req.Reset()
			req.SetRequestURI("/api/items?id=7")
			req.Header.SetHost("shoal.test")
			ctx.Init(&req, remote, nil)
			p.ServeFastHTTP(&ctx)
			if ctx.Response.StatusCode() != 200 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	})
}

// BenchmarkRoute measures the routing lookup over a table with host, path
// and catch-all pools.
func BenchmarkRoute(b *testing.B) {
	pools := map[string]*lb.Pool{}
	bl := benchBalancer(b, benchBackend(b))
	base := bl.Table().Pools["api"]
	for i, spec := range []struct {
		hosts []string
		path  string
	}{
		{[]string{"api.example.com"}, ""},
		{[]string{"*.example.com"}, "/v1"},
		{nil, "/static"},
		{nil, ""},
	} {
		s := *base.Settings
		s.Hosts, s.Path = spec.hosts, spec.path
		pools[string(rune('a'+i))] = &lb.Pool{Name: string(rune('a' + i)), Settings: &s}
	}
	t := lb.NewTable(pools, "")
	host, path := []byte("Shop.Example.com:8080"), []byte("/v1/items")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if t.Route(host, path) == nil {
			b.Fatal("no route")
		}
	}
}
