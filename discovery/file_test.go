package discovery

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/shoal-lb/shoal/lb"
)

func TestParseConfigMinimal(t *testing.T) {
	cfg, err := ParseConfig("shoal.yaml", []byte(`
pools:
  api:
    servers:
      - address: 127.0.0.1:9001
      - address: 127.0.0.1:9002
        weight: 2
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pools) != 1 || len(cfg.Pools[0].Servers) != 2 {
		t.Fatalf("pools = %+v", cfg.Pools)
	}
	p := cfg.Pools[0]
	if p.Name != "api" || p.Settings.Method != lb.MethodRoundRobin || p.Servers[1].Weight != 2 || p.Servers[0].Weight != 1 {
		t.Fatalf("pool = %+v", p)
	}
	if p.Servers[0].ID != "file:api/127.0.0.1:9001" {
		t.Fatalf("server ID = %q", p.Servers[0].ID)
	}
}

func TestParseConfigSettings(t *testing.T) {
	cfg, err := ParseConfig("shoal.yaml", []byte(`
default_pool: api
access_log: false
trusted_proxies: [10.0.0.0/8]
pools:
  api:
    method: hash
    hash:
      key: header:X-User
      balance_factor: 1.25
    host: [api.example.com, "*.api.test"]
    health: {path: /healthz, interval: 500ms, status: 200-299}
    slow_start: 30s
    servers:
      - address: 127.0.0.1:9001
        backup: true
`))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Pools[0].Settings
	if s.Method != "hash" || s.HashKey != "header:X-User" || s.BalanceFactor != 1.25 {
		t.Errorf("hash settings = %+v", s)
	}
	if strings.Join(s.Hosts, ",") != "api.example.com,*.api.test" {
		t.Errorf("hosts = %v", s.Hosts)
	}
	if s.Health.Path != "/healthz" || s.Health.Interval != 500*time.Millisecond || s.Health.StatusLo != 200 || s.Health.StatusHi != 299 {
		t.Errorf("health = %+v", s.Health)
	}
	if s.SlowStart != 30*time.Second || !cfg.Pools[0].Servers[0].Backup {
		t.Errorf("slow start %v, backup %v", s.SlowStart, cfg.Pools[0].Servers[0].Backup)
	}
	if cfg.DefaultPool != "api" || cfg.AccessLog == nil || *cfg.AccessLog || len(cfg.TrustedProxies) != 1 {
		t.Errorf("globals = %+v", cfg)
	}
}

func TestParseConfigErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		desc, yaml, want string
	}{
		{"bad method", "pools:\n  api:\n    method: fastest\n    servers: []\n", "shoal.yaml:3: pools.api.method: \"fastest\": expected one of"},
		{"unknown pool key", "pools:\n  api:\n    mehtod: random\n", "shoal.yaml:3: pools.api: unknown key \"mehtod\""},
		{"unknown top key", "pool:\n  api: {}\n", "shoal.yaml:1: unknown key \"pool\""},
		{"bad weight", "pools:\n  api:\n    servers:\n      - address: 127.0.0.1:1\n        weight: 0\n", "shoal.yaml:5: pools.api.servers: weight \"0\""},
		{"address without port", "pools:\n  api:\n    servers:\n      - address: localhost\n", "shoal.yaml:4: pools.api.servers: address \"localhost\": expected host:port"},
		{"not yaml", "pools: [\n", "shoal.yaml:"},
		{"hash without key", "pools:\n  api:\n    method: hash\n", "hash.key"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := ParseConfig("shoal.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// recordSink keeps the last update per source.
type recordSink struct {
	mu      sync.Mutex
	pools   []lb.PoolSpec
	updates int
}

func (r *recordSink) Update(source string, pools []lb.PoolSpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pools = pools
	r.updates++
}

func (r *recordSink) servers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.pools {
		for _, s := range p.Servers {
			out = append(out, s.Address)
		}
	}
	return out
}

func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "shoal.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// An editor's atomic save: write a temp file, rename it over.
	rename := func(body string) {
		t.Helper()
		tmp := filepath.Join(dir, ".shoal.yaml.swp")
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	pool := func(addrs ...string) string {
		s := "pools:\n  api:\n    servers:\n"
		for _, a := range addrs {
			s += "      - address: " + a + "\n"
		}
		return s
	}
	write(pool("127.0.0.1:1"))
	sink := &recordSink{}
	var reloads []error
	var mu sync.Mutex
	w := &FileConfigWatcher{Path: path, Sink: sink, Log: zerolog.Nop(), OnReload: func(_ *FileConfig, err error) {
		mu.Lock()
		reloads = append(reloads, err)
		mu.Unlock()
	}}
	if _, err := w.Load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, ready := make(chan struct{}), make(chan struct{})
	go func() { w.watch(ctx, ready); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-ready

	write(pool("127.0.0.1:1", "127.0.0.1:2"))
	waitFor(t, func() bool { return len(sink.servers()) == 2 }, "a valid change was not applied")

	write("pools:\n  api:\n    method: nope\n")
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(reloads) == 2 }, "a bad file was not reported")
	if got := sink.servers(); len(got) != 2 {
		t.Fatalf("a bad file replaced the config: %v", got)
	}
	mu.Lock()
	if reloads[1] == nil || !strings.Contains(reloads[1].Error(), ":3:") {
		t.Fatalf("reload error %v does not name the line", reloads[1])
	}
	mu.Unlock()

	rename(pool("127.0.0.1:3"))
	waitFor(t, func() bool { s := sink.servers(); return len(s) == 1 && s[0] == "127.0.0.1:3" }, "an atomic rename was not picked up")

	// A symlink swap, as Kubernetes does for mounted config maps.
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o755)
	os.WriteFile(filepath.Join(real, "shoal.yaml"), []byte(pool("127.0.0.1:4")), 0o644)
	os.Remove(path)
	link := filepath.Join(dir, ".tmp-link")
	os.Symlink(filepath.Join(real, "shoal.yaml"), link)
	os.Rename(link, path)
	waitFor(t, func() bool { s := sink.servers(); return len(s) == 1 && s[0] == "127.0.0.1:4" }, "a symlink swap was not picked up")
}
