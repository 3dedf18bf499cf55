package main

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/shoal-lb/shoal/testdata/harness"
)

// labels for a backend of pool in the tests.
func labels(pool string, extra ...string) map[string]string {
	l := map[string]string{"shoal.enable": "true", "shoal.port": "8000", "shoal.pool": pool}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

// waitServing waits until every hostname in want answers through Shoal.
func waitServing(t *testing.T, url string, want []string, hdr ...string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	seen := map[string]bool{}
	harness.Eventually(t, 20*time.Second, func() bool {
		_, body, err := harness.Get(c, url, hdr...)
		if err == nil {
			seen[body] = true
		}
		for _, w := range want {
			if !seen[w] {
				return false
			}
		}
		return true
	}, "backends %v never all served through %s (seen %v)", want, url, seen)
}

func TestEndToEndDiscovery(t *testing.T) {
	net := harness.NewNetwork(t)
	other := harness.NewNetwork(t)
	var hosts []string
	for i := 0; i < 3; i++ {
		id := harness.Run(t, harness.Container{Network: net, Labels: labels("api")})
		hosts = append(hosts, harness.Hostname(t, id))
	}
	unlabelled := harness.Hostname(t, harness.Run(t, harness.Container{Network: net}))
	elsewhereID := harness.Run(t, harness.Container{Network: other, Labels: labels("api")})
	elsewhere := harness.Hostname(t, elsewhereID)
	elsewhereName := harness.ContainerName(t, elsewhereID)

	s := harness.StartShoal(t, nil, "--network", net, "--access-log=false")
	waitServing(t, s.URL()+"/", hosts)

	t.Run("exactly the three labelled backends, evenly", func(t *testing.T) {
		got := harness.Spread(t, s.URL()+"/", 300)
		if len(got) != 3 {
			t.Fatalf("want 3 backends, got %v", got)
		}
		for _, h := range hosts {
			if got[h] != 100 {
				t.Errorf("backend %s got %d of 300 requests, want 100 (round robin): %v", h, got[h], got)
			}
		}
		if got[unlabelled] > 0 || got[elsewhere] > 0 {
			t.Errorf("unlabelled or other-network container got traffic: %v", got)
		}
		if !strings.Contains(s.Log(), elsewhereName) || !strings.Contains(s.Log(), "not on network") {
			t.Errorf("no warning names the container on the other network:\n%s", s.Log())
		}
	})

	parent := t
	t.Run("docker run of a fourth adds it", func(t *testing.T) {
		id := harness.Run(parent, harness.Container{Network: net, Labels: labels("api")})
		ran := time.Now()
		fourth := harness.Hostname(t, id)
		waitServing(t, s.URL()+"/", []string{fourth})
		t.Logf("the new container served its first request %v after docker run returned", time.Since(ran))
		hosts = append(hosts, fourth)
	})

	t.Run("docker stop of one removes it", func(t *testing.T) {
		victim := hosts[0]
		ids := harness.Docker(t, "ps", "-q", "--filter", "label="+harness.RunLabel+"="+harness.RunID, "--filter", "network="+net)
		for _, id := range strings.Fields(ids) {
			if harness.Hostname(t, id) == victim {
				harness.Docker(t, "stop", "-t", "5", id)
			}
		}
		got := harness.Spread(t, s.URL()+"/", 90)
		if got[victim] > 0 {
			t.Fatalf("stopped container %s still got %d requests: %v", victim, got[victim], got)
		}
		if len(got) != 3 {
			t.Fatalf("want the 3 remaining backends, got %v", got)
		}
	})
}

func TestEndToEndRoutingAndProtocols(t *testing.T) {
	net := harness.NewNetwork(t)
	web := harness.Hostname(t, harness.Run(t, harness.Container{Network: net, Labels: labels("web", "shoal.host", "Web.Example.com,*.web.test")}))
	static := harness.Hostname(t, harness.Run(t, harness.Container{Network: net, Labels: labels("static", "shoal.path", "/static")}))
	api := harness.Hostname(t, harness.Run(t, harness.Container{Network: net, Labels: labels("api")}))

	s := harness.StartShoal(t, nil, "--network", net)
	waitServing(t, s.URL()+"/", []string{api})
	waitServing(t, s.URL()+"/static/x", []string{static})
	waitServing(t, s.URL()+"/", []string{web}, "Host", "web.example.com:8080")

	c := &http.Client{Timeout: 5 * time.Second}
	cases := []struct {
		desc, path, host, want string
	}{
		{"host, case-insensitive, port ignored", "/", "WEB.example.COM:80", web},
		{"wildcard host", "/", "a.web.test", web},
		{"path prefix", "/static/app.js", "", static},
		{"path prefix itself", "/static", "", static},
		{"not a segment match", "/staticfoo", "", api},
		{"catch-all", "/anything", "other.example", api},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			var hdr []string
			if tc.host != "" {
				hdr = []string{"Host", tc.host}
			}
			code, body, err := harness.Get(c, s.URL()+tc.path, hdr...)
			if err != nil || code != 200 || body != tc.want {
				t.Fatalf("GET %s (Host %q) = %d %q, %v; want 200 from %s", tc.path, tc.host, code, body, err, tc.want)
			}
		})
	}

	t.Run("websocket echo", func(t *testing.T) {
		ws, resp, err := websocket.DefaultDialer.Dial("ws://"+s.Addr+"/ws", nil)
		if err != nil {
			t.Fatalf("dial: %v (%v)", err, resp)
		}
		defer ws.Close()
		for _, msg := range []string{"hello", strings.Repeat("x", 100000)} {
			if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := ws.ReadMessage()
			if err != nil || string(got) != msg {
				t.Fatalf("echo of %d bytes: got %d bytes, %v", len(msg), len(got), err)
			}
		}
	})

	t.Run("server-sent events arrive one by one", func(t *testing.T) {
		resp, err := c.Get(s.URL() + "/sse?n=3&ms=400")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		r := bufio.NewReader(resp.Body)
		var at []time.Duration
		for len(at) < 3 {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("after %d events: %v", len(at), err)
			}
			if strings.HasPrefix(line, "data: ") {
				at = append(at, time.Since(start))
			}
		}
		// Buffered, all three would arrive together after 800ms.
		if at[0] > 300*time.Millisecond || at[2]-at[0] < 600*time.Millisecond {
			t.Fatalf("events were not streamed one by one: arrival times %v", at)
		}
	})
}
