package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/testdata/harness"
)

// readyIn returns the names of the ready backends of pool, from the admin API.
func readyIn(t testing.TB, s *harness.Shoal, pool string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for name, b := range harness.States(s.Admin) {
		if b.Pool == pool && b.State == "ready" {
			out[name] = true
		}
	}
	return out
}

// users maps each of n users (X-User header) to the backend that served it,
// asking each user rounds times and failing if one user was served by two.
func users(t *testing.T, url string, n, rounds int) map[string]string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	got := map[string]string{}
	for r := 0; r < rounds; r++ {
		for i := 0; i < n; i++ {
			u := fmt.Sprintf("user-%d", i)
			code, body, err := harness.Get(c, url, "X-User", u)
			if err != nil || code != 200 {
				t.Fatalf("GET as %s: %d %v", u, code, err)
			}
			if prev, ok := got[u]; ok && prev != body {
				t.Fatalf("%s was served by %s and then by %s", u, prev, body)
			}
			got[u] = body
		}
	}
	return got
}

func TestEndToEndLeastConnAvoidsSlowBackend(t *testing.T) {
	net := harness.NewNetwork(t)
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, harness.Run(t, harness.Container{Network: net, Labels: labels("api", "shoal.method", "least_conn")}))
	}
	slowIP := harness.IP(t, ids[0], net)
	slow := harness.Hostname(t, ids[0])
	s := harness.StartShoal(t, nil, "--network", net, "--access-log=false")
	harness.Eventually(t, 20*time.Second, func() bool { return len(readyIn(t, s, "api")) == 3 }, "three backends never became ready")

	// Make one backend slow (reached directly on its container address).
	if _, err := http.Get("http://" + slowIP + ":8000/admin/latency?ms=200"); err != nil {
		t.Fatal(err)
	}
	res := harness.Load{URL: s.URL() + "/", Clients: 16, Duration: 4 * time.Second}.Run(context.Background())
	t.Logf("least_conn with one backend slowed to 200ms: %s; by backend %v", res, res.ByBody)
	if res.Failed() > 0 {
		t.Fatalf("%d requests failed", res.Failed())
	}
	others := (res.OK - res.ByBody[slow]) / 2
	if res.ByBody[slow]*5 > others {
		t.Fatalf("the slow backend got %d requests, the others %d each on average: least_conn did not steer away", res.ByBody[slow], others)
	}
}

func TestEndToEndHashByHeader(t *testing.T) {
	net := harness.NewNetwork(t)
	hashLabels := func() map[string]string {
		return labels("api", "shoal.method", "hash", "shoal.hash.key", "header:X-User")
	}
	for i := 0; i < 3; i++ {
		harness.Run(t, harness.Container{Network: net, Labels: hashLabels()})
	}
	s := harness.StartShoal(t, nil, "--network", net, "--access-log=false")
	harness.Eventually(t, 20*time.Second, func() bool { return len(readyIn(t, s, "api")) == 3 }, "three backends never became ready")

	before := users(t, s.URL()+"/", 60, 3)

	// A replica of another pool changes nothing for this one.
	other := harness.Run(t, harness.Container{Network: net, Labels: labels("other", "shoal.path", "/other")})
	harness.Eventually(t, 20*time.Second, func() bool { return readyIn(t, s, "other")[harness.ContainerName(t, other)] }, "the other pool's replica never became ready")
	for u, b := range users(t, s.URL()+"/", 60, 2) {
		if before[u] != b {
			t.Fatalf("%s moved from %s to %s when another pool scaled", u, before[u], b)
		}
	}

	// A fourth replica of this pool takes some users; the rest stay put.
	id := harness.Run(t, harness.Container{Network: net, Labels: hashLabels()})
	fourth := harness.Hostname(t, id)
	harness.Eventually(t, 20*time.Second, func() bool { return readyIn(t, s, "api")[harness.ContainerName(t, id)] }, "the fourth replica never became ready")
	after := users(t, s.URL()+"/", 60, 2)
	moved := 0
	for u, b := range after {
		if b != before[u] {
			moved++
			if b != fourth {
				t.Fatalf("%s moved from %s to %s, not to the new replica", u, before[u], b)
			}
		}
	}
	t.Logf("adding a 4th replica moved %d of 60 users, all to the new replica", moved)
	if moved == 0 || moved > 30 {
		t.Fatalf("%d of 60 users moved; want about a quarter", moved)
	}
}

func TestEndToEndMethodChangeByReplacingContainers(t *testing.T) {
	net := harness.NewNetwork(t)
	var old []string
	for i := 0; i < 3; i++ {
		old = append(old, harness.Run(t, harness.Container{Network: net, Labels: labels("api")}))
	}
	s := harness.StartShoal(t, nil, "--network", net, "--access-log=false")
	harness.Eventually(t, 20*time.Second, func() bool { return len(readyIn(t, s, "api")) == 3 }, "three backends never became ready")
	if got := harness.Spread(t, s.URL()+"/", 30, "X-User", "alice"); len(got) != 3 {
		t.Fatalf("round robin should spread one user over all three: %v", got)
	}

	var fresh []string
	for i := 0; i < 3; i++ {
		fresh = append(fresh, harness.Run(t, harness.Container{Network: net, Labels: labels("api", "shoal.method", "hash", "shoal.hash.key", "header:X-User")}))
	}
	for _, id := range old {
		harness.Docker(t, "rm", "-f", id)
	}
	harness.Eventually(t, 20*time.Second, func() bool {
		r := readyIn(t, s, "api")
		for _, id := range fresh {
			if !r[harness.ContainerName(t, id)] {
				return false
			}
		}
		return len(r) == 3
	}, "the replacement replicas never became the pool")
	if got := harness.Spread(t, s.URL()+"/", 30, "X-User", "alice"); len(got) != 1 {
		t.Fatalf("after the replacement, method=hash should pin one user to one backend: %v", got)
	}
}
