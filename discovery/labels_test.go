package discovery

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/lb"
)

func testContainer(labels map[string]string, mods ...func(*Container)) Container {
	c := Container{
		ID: "abc123", Name: "proj_api_1", Labels: labels, Running: true,
		Exposed: []int{8000}, IPs: map[string]string{"proj_net": "172.20.0.5"},
		Created: time.Unix(100, 0),
	}
	for _, m := range mods {
		m(&c)
	}
	return c
}

func TestParseContainer(t *testing.T) {
	opts := LabelOptions{Network: "proj_net"}
	tests := []struct {
		desc      string
		c         Container
		opts      *LabelOptions
		wantOK    bool
		wantErr   string // substring of the error; "" for none
		wantPool  string
		wantAddr  string
		wantW     int
		wantKeys  map[string]string
		wantNotes int
	}{
		{desc: "not enabled", c: testContainer(nil), wantOK: false},
		{desc: "enabled, defaults", c: testContainer(map[string]string{"shoal.enable": "true"}), wantOK: true, wantPool: "proj_api_1", wantAddr: "172.20.0.5:8000", wantW: 1},
		{desc: "expose by default", c: testContainer(nil), opts: &LabelOptions{Network: "proj_net", ExposeByDefault: true}, wantOK: true, wantPool: "proj_api_1", wantAddr: "172.20.0.5:8000", wantW: 1},
		{desc: "opted out with expose by default", c: testContainer(map[string]string{"shoal.enable": "false"}), opts: &LabelOptions{Network: "proj_net", ExposeByDefault: true}, wantOK: false},
		{desc: "compose service names the pool", c: testContainer(map[string]string{"shoal.enable": "true", "com.docker.compose.service": "api"}), wantOK: true, wantPool: "api", wantAddr: "172.20.0.5:8000", wantW: 1},
		{desc: "pool label wins", c: testContainer(map[string]string{"shoal.enable": "true", "com.docker.compose.service": "api", "shoal.pool": "web"}), wantOK: true, wantPool: "web", wantAddr: "172.20.0.5:8000", wantW: 1},
		{desc: "port and weight", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.port": "5000", "shoal.weight": "5"}), wantOK: true, wantPool: "proj_api_1", wantAddr: "172.20.0.5:5000", wantW: 5},
		{desc: "pool-level keys kept", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.method": "least_conn", "shoal.health.path": "/healthz"}), wantOK: true, wantPool: "proj_api_1", wantAddr: "172.20.0.5:8000", wantW: 1, wantKeys: map[string]string{"method": "least_conn", "health.path": "/healthz"}},
		{desc: "method=hash alone is kept for the pool vote", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.method": "hash"}), wantOK: true, wantPool: "proj_api_1", wantAddr: "172.20.0.5:8000", wantW: 1, wantKeys: map[string]string{"method": "hash"}},
		{desc: "other prefix", c: testContainer(map[string]string{"lb.enable": "true", "lb.weight": "3"}), opts: &LabelOptions{Prefix: "lb", Network: "proj_net"}, wantOK: true, wantPool: "proj_api_1", wantAddr: "172.20.0.5:8000", wantW: 3},
		{desc: "unknown key is a note, not a skip", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.wieght": "3"}), wantOK: true, wantPool: "proj_api_1", wantAddr: "172.20.0.5:8000", wantW: 1, wantNotes: 1},
		{desc: "bad enable", c: testContainer(map[string]string{"shoal.enable": "yes please"}), wantErr: `label shoal.enable="yes please": expected true or false`},
		{desc: "bad weight", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.weight": "0"}), wantErr: `container proj_api_1: label shoal.weight="0": expected an integer from 1 to 1000`},
		{desc: "weight too big", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.weight": "1001"}), wantErr: "shoal.weight"},
		{desc: "bad port", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.port": "http"}), wantErr: `shoal.port="http": expected a TCP port from 1 to 65535`},
		{desc: "no exposed port", c: testContainer(map[string]string{"shoal.enable": "true"}, func(c *Container) { c.Exposed = nil }), wantErr: "exposes none"},
		{desc: "several exposed ports", c: testContainer(map[string]string{"shoal.enable": "true"}, func(c *Container) { c.Exposed = []int{80, 443} }), wantErr: "exposed ports [80 443]"},
		{desc: "bad method", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.method": "fastest"}), wantErr: `shoal.method="fastest": expected one of round_robin`},
		{desc: "bad duration", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.health.interval": "often"}), wantErr: `shoal.health.interval="often": expected a duration`},
		{desc: "bad host", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.host": "a.com/x"}), wantErr: "shoal.host"},
		{desc: "not on the network", c: testContainer(map[string]string{"shoal.enable": "true"}, func(c *Container) { c.IPs = map[string]string{"other": "10.0.0.2"} }), wantErr: `not on network "proj_net"`},
		{desc: "no network given, only one", c: testContainer(map[string]string{"shoal.enable": "true"}), opts: &LabelOptions{}, wantOK: true, wantPool: "proj_api_1", wantAddr: "172.20.0.5:8000", wantW: 1},
		{desc: "shared network picked", c: testContainer(map[string]string{"shoal.enable": "true"}, func(c *Container) { c.IPs["front"] = "172.30.0.9" }), opts: &LabelOptions{Shared: []string{"front"}}, wantOK: true, wantPool: "proj_api_1", wantAddr: "172.30.0.9:8000", wantW: 1},
		{desc: "network label", c: testContainer(map[string]string{"shoal.enable": "true", "shoal.network": "front"}, func(c *Container) { c.IPs["front"] = "172.30.0.9" }), wantOK: true, wantPool: "proj_api_1", wantAddr: "172.30.0.9:8000", wantW: 1},
		{desc: "not running", c: testContainer(map[string]string{"shoal.enable": "true"}, func(c *Container) { c.Running = false }), wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			o := opts
			if tc.opts != nil {
				o = *tc.opts
			}
			m, ok, notes, err := ParseContainer(tc.c, o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if ok {
					t.Fatal("a container with a bad label must be skipped")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if m.Pool != tc.wantPool || m.Server.Address != tc.wantAddr || m.Server.Weight != tc.wantW {
				t.Errorf("got pool %q addr %q weight %d; want %q %q %d", m.Pool, m.Server.Address, m.Server.Weight, tc.wantPool, tc.wantAddr, tc.wantW)
			}
			for k, v := range tc.wantKeys {
				if m.PoolKeys[k] != v {
					t.Errorf("pool key %s = %q, want %q", k, m.PoolKeys[k], v)
				}
			}
			if len(notes) != tc.wantNotes {
				t.Errorf("notes = %v, want %d", notes, tc.wantNotes)
			}
		})
	}
}

func TestLabelErrorNamesEverything(t *testing.T) {
	_, _, _, err := ParseContainer(testContainer(map[string]string{"shoal.enable": "true", "shoal.weight": "heavy"}), LabelOptions{Network: "proj_net"})
	var le *LabelError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want a *LabelError", err)
	}
	if le.Container != "proj_api_1" || le.Label != "shoal.weight" || le.Value != "heavy" || le.Expected == "" {
		t.Fatalf("LabelError = %+v; want container, label, value and expectation", le)
	}
}

func TestMergePoolsVote(t *testing.T) {
	member := func(id string, created int64, keys map[string]string) Member {
		return Member{Pool: "api", Server: lb.Server{ID: id, Created: time.Unix(created, 0)}, PoolKeys: keys}
	}
	tests := []struct {
		desc       string
		members    []Member
		wantMethod string
		wantWarn   bool
	}{
		{"agreement", []Member{member("a", 1, map[string]string{"method": "least_conn"}), member("b", 2, map[string]string{"method": "least_conn"})}, "least_conn", false},
		{"majority wins", []Member{member("a", 1, map[string]string{"method": "random"}), member("b", 2, map[string]string{"method": "least_conn"}), member("c", 3, map[string]string{"method": "least_conn"})}, "least_conn", true},
		{"tie goes to the oldest", []Member{member("b", 5, map[string]string{"method": "least_conn"}), member("a", 1, map[string]string{"method": "random"})}, "random", true},
		{"unset keys do not vote", []Member{member("a", 1, nil), member("b", 2, map[string]string{"method": "ip_hash"})}, "ip_hash", false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pools, warns := MergePools(tc.members, "shoal")
			if len(pools) != 1 || pools[0].Settings.Method != tc.wantMethod {
				t.Fatalf("pools = %+v, want one pool with method %s", pools, tc.wantMethod)
			}
			if (len(warns) > 0) != tc.wantWarn {
				t.Fatalf("warnings = %v, want some: %v", warns, tc.wantWarn)
			}
			if tc.wantWarn && !strings.Contains(warns[0], "pool api") || tc.wantWarn && !strings.Contains(warns[0], "shoal.method") {
				t.Fatalf("warning %q does not name the pool and the label", warns[0])
			}
		})
	}
}

func TestMergePoolsInvalidCombination(t *testing.T) {
	// method=hash on one container, hash.key nowhere: the pool keeps working
	// with the defaults and says why.
	ms := []Member{{Pool: "api", Server: lb.Server{ID: "a"}, PoolKeys: map[string]string{"method": "hash"}}}
	pools, warns := MergePools(ms, "shoal")
	if pools[0].Settings.Method != lb.MethodRoundRobin || len(warns) != 1 || !strings.Contains(warns[0], "hash.key") {
		t.Fatalf("pools %+v warns %v", pools, warns)
	}
}
