package main

import (
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/testdata/harness"
)

// BenchmarkDockerRunToFirstRequest measures, per iteration, the time from
// `docker run` returning to the first request that the new container
// serves through Shoal. Each container gets a pool of its own, routed by
// host, so the first 200 can only come from it. Run with -benchtime=20x.
func BenchmarkDockerRunToFirstRequest(b *testing.B) {
	net := harness.NewNetwork(b)
	s := harness.StartShoal(b, nil, "--network", net, "--access-log=false", "--log-level", "warn")
	c := &http.Client{Timeout: time.Second}
	var took []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		host := fmt.Sprintf("run-%d.bench.test", i)
		id := harness.Run(b, harness.Container{Network: net, Labels: labels(fmt.Sprintf("run%d", i), "shoal.host", host)})
		start := time.Now()
		for {
			code, _, err := harness.Get(c, s.URL()+"/", "Host", host)
			if err == nil && code == 200 {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("container %d never served", i)
			}
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		harness.Docker(b, "rm", "-f", id)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "worst-ms")
}

// BenchmarkFirstSync200 measures how long Shoal takes from its start to
// having 200 labelled containers ready in its pools.
func BenchmarkFirstSync200(b *testing.B) {
	const n = 200
	net := harness.NewNetwork(b)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			harness.Run(b, harness.Container{Network: net, Labels: labels("api")})
		}()
	}
	wg.Wait()
	harness.ShoalBinary(b) // built once, outside the timing
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		s := harness.StartShoal(b, nil, "--network", net, "--access-log=false", "--log-level", "warn")
		for len(readyIn(b, s, "api")) < n {
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("only %d of %d ready after 2 minutes", len(readyIn(b, s, "api")), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-200-ready")
		b.StopTimer()
		s.Stop(5 * time.Second)
		b.StartTimer()
	}
}
