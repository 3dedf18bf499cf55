package lb

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func routePool(name string, path string, hosts ...string) *Pool {
	s := DefaultSettings()
	s.Hosts, s.Path = hosts, path
	return &Pool{Name: name, Settings: &s}
}

func TestRoute(t *testing.T) {
	pools := map[string]*Pool{}
	for _, p := range []*Pool{
		routePool("web", "", "web.example.com"),
		routePool("webapi", "/api", "web.example.com"),
		routePool("wild", "", "*.example.com"),
		routePool("deepwild", "", "*.eu.example.com"),
		routePool("static", "/static"),
		routePool("staticimg", "/static/img"),
		routePool("slash", "/files/"),
		routePool("catchall", ""),
	} {
		pools[p.Name] = p
	}
	table := NewTable(pools, "")
	tests := []struct {
		desc, host, path, want string
	}{
		{"exact host", "web.example.com", "/", "web"},
		{"host is case-insensitive, port ignored", "WEB.Example.COM:8080", "/x", "web"},
		{"trailing dot", "web.example.com.", "/", "web"},
		{"host and path beat host alone", "web.example.com", "/api/v1", "webapi"},
		{"path segment boundary", "web.example.com", "/apiary", "web"},
		{"wildcard", "shop.example.com", "/", "wild"},
		{"longest wildcard", "a.eu.example.com", "/", "deepwild"},
		{"wildcard needs a label", "example.com", "/", "catchall"},
		{"path prefix", "other.test", "/static/app.js", "static"},
		{"longest path prefix", "other.test", "/static/img/a.png", "staticimg"},
		{"prefix itself", "other.test", "/static", "static"},
		{"prefix with query", "other.test", "/static?x=1", "static"},
		{"not a segment", "other.test", "/staticky", "catchall"},
		{"prefix ending in slash", "other.test", "/files/a", "slash"},
		{"catch-all", "other.test", "/", "catchall"},
		{"no host header", "", "/", "catchall"},
		{"ipv6 host with port", "[::1]:8080", "/", "catchall"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p := table.Route([]byte(tc.host), []byte(tc.path))
			if p == nil || p.Name != tc.want {
				t.Fatalf("Route(%q, %q) = %v, want %s", tc.host, tc.path, p, tc.want)
			}
		})
	}
}

func TestRouteCatchAlls(t *testing.T) {
	two := map[string]*Pool{"a": routePool("a", ""), "b": routePool("b", "")}
	if p := NewTable(two, "").Route([]byte("x"), []byte("/")); p != nil {
		t.Fatalf("two catch-alls and no default pool routed to %s, want 404", p.Name)
	}
	if u := NewTable(two, "").Unroutable; len(u) != 2 {
		t.Fatalf("Unroutable = %v, want both pools named", u)
	}
	if p := NewTable(two, "b").Route([]byte("x"), []byte("/")); p == nil || p.Name != "b" {
		t.Fatalf("--default-pool b routed to %v", p)
	}
	if p := NewTable(map[string]*Pool{"a": routePool("a", "/x")}, "").Route([]byte("x"), []byte("/y")); p != nil {
		t.Fatalf("no catch-all routed to %s, want 404", p.Name)
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	table := NewTable(map[string]*Pool{"w": routePool("w", "", "*.example.com"), "c": routePool("c", "")}, "")
	host, path := []byte("Shop.Example.com:80"), []byte("/a/b")
	if n := testing.AllocsPerRun(100, func() { table.Route(host, path) }); n != 0 {
		t.Fatalf("Route allocates %v times per call", n)
	}
}

func TestBalancerUpdate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bl := New(ctx, Config{Log: zerolog.Nop()})
	spec := func(addrs ...string) []PoolSpec {
		ps := PoolSpec{Name: "api", Settings: DefaultSettings()}
		for _, a := range addrs {
			ps.Servers = append(ps.Servers, Server{ID: "id-" + a, Name: a, Address: a, Weight: 1})
		}
		return []PoolSpec{ps}
	}
	bl.Update("docker", spec("127.0.0.1:1", "127.0.0.1:2"))
	first := bl.Table()
	b1 := first.Pools["api"].Backends()[0]

	bl.Update("docker", spec("127.0.0.1:1", "127.0.0.1:2"))
	if bl.Table() != first {
		t.Fatal("an update that changes nothing published a new table")
	}

	bl.Update("docker", spec("127.0.0.1:1", "127.0.0.1:3"))
	second := bl.Table()
	if second == first || second.Pools["api"].Backends()[0] != b1 {
		t.Fatal("a kept backend must keep its live state across tables")
	}

	// A static source shares the pool; its settings win.
	static := spec("127.0.0.1:9")
	static[0].Settings.Method = MethodLeastConn
	static[0].Servers[0].ID = "file:api/127.0.0.1:9"
	bl.Update("file", static)
	p := bl.Table().Pools["api"]
	if p.Len() != 3 || p.Settings.Method != MethodLeastConn {
		t.Fatalf("merged pool has %d backends and method %s; want 3 and least_conn", p.Len(), p.Settings.Method)
	}

	bl.Update("docker", nil)
	if p := bl.Table().Pools["api"]; p.Len() != 1 {
		t.Fatalf("after docker lost its servers the pool has %d backends, want the static one", p.Len())
	}
}

func TestManualDrainSurvivesRediscovery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bl := New(ctx, Config{Log: zerolog.Nop()})
	s := Server{ID: "c1", Name: "api_1", Address: "127.0.0.1:1", Weight: 1}
	bl.Update("docker", []PoolSpec{{Name: "api", Settings: DefaultSettings(), Servers: []Server{s}}})
	if err := bl.Drain("api", "c1", true); err != nil {
		t.Fatal(err)
	}
	bl.Update("docker", nil) // e.g. the engine was lost and found again
	bl.Update("docker", []PoolSpec{{Name: "api", Settings: DefaultSettings(), Servers: []Server{s}}})
	if b := bl.Table().Pools["api"].Backends()[0]; !b.ManuallyDrained() || b.State() != StateDraining {
		t.Fatal("an operator's drain did not survive rediscovery of the same container")
	}
	restarted := s
	restarted.Started = s.Started.Add(1)
	bl.Update("docker", []PoolSpec{{Name: "api", Settings: DefaultSettings(), Servers: []Server{restarted}}})
	if b := bl.Table().Pools["api"].Backends()[0]; b.ManuallyDrained() {
		t.Fatal("a restart must end the operator's drain")
	}
	if err := bl.Drain("api", "nope", true); err == nil {
		t.Fatal("draining an unknown backend must fail")
	}
}

func TestEmptiedPoolLingers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bl := New(ctx, Config{Log: zerolog.Nop(), PoolGrace: 200 * time.Millisecond})
	s := Server{ID: "c1", Name: "api_1", Address: "127.0.0.1:1", Weight: 1}
	bl.Update("docker", []PoolSpec{{Name: "api", Settings: DefaultSettings(), Servers: []Server{s}}})
	bl.Update("docker", nil) // every replica restarting at once
	p := bl.Table().Pools["api"]
	if p == nil || !p.Emptied || p.Len() != 0 {
		t.Fatalf("a pool that just lost its last backend should stay, empty: %+v", p)
	}
	deadline := time.Now().Add(5 * time.Second)
	for bl.Table().Pools["api"] != nil {
		if time.Now().After(deadline) {
			t.Fatal("the emptied pool outlived PoolGrace")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
