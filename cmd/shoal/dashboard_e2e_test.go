package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/shoal-lb/shoal/lb"
	"github.com/shoal-lb/shoal/proxy"
	"github.com/shoal-lb/shoal/testdata/harness"
)

// chromiumPath finds Debian's chromium. The browser test fails without it:
// .ci/run installs it (apt-get install -y chromium).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the dashboard test needs Chromium: apt-get install -y chromium")
	return ""
}

type dashRow struct {
	Pool  string `json:"pool"`
	Name  string `json:"name"`
	State string `json:"state"`
}

const jsRows = `[...document.querySelectorAll('.pool .row.backend')].map(r => ({pool: r.closest('.pool').dataset.pool, name: r.dataset.name, state: r.dataset.state}))`

// TestDashboardE2E opens the dashboard of a real Shoal that discovers real
// containers, in headless Chromium: the backends appear by container name, a
// stopped container turns draining or disappears within 2s, the drain button
// drains, the event feed is live, and the page fits a phone. It writes a
// screenshot, copied to docs/dashboard.png when SHOAL_UPDATE_SCREENSHOT=1.
func TestDashboardE2E(t *testing.T) {
	chrome := chromiumPath(t)
	harness.RequireDocker(t)
	network := harness.NewNetwork(t)
	tag := harness.RunID[:4]
	name := func(s string) string { return "dash" + tag + "-" + s }
	start := func(n string, labels map[string]string) {
		l := map[string]string{"shoal.enable": "true", "shoal.port": "8000"}
		for k, v := range labels {
			l[k] = v
		}
		harness.Run(t, harness.Container{Name: name(n), Network: network, Labels: l})
	}
	start("web-1", map[string]string{"shoal.pool": "web", "shoal.weight": "2"})
	start("web-2", map[string]string{"shoal.pool": "web"})
	start("web-3", map[string]string{"shoal.pool": "web"})
	for _, n := range []string{"api-1", "api-2"} {
		start(n, map[string]string{"shoal.pool": "api", "shoal.path": "/api", "shoal.method": "least_conn", "shoal.health.path": "/health"})
	}
	s := harness.StartShoal(t, nil, "--network", network)

	// Bounded traffic through the proxy, so that rates and latencies move.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var load sync.WaitGroup
	loadCtx, stopLoad := context.WithCancel(ctx)
	for _, l := range []harness.Load{
		{URL: s.URL() + "/slow?ms=3", Clients: 3, Duration: 60 * time.Second, MaxRequests: 40000},
		{URL: s.URL() + "/api/x", Clients: 2, Duration: 60 * time.Second, MaxRequests: 40000},
	} {
		load.Add(1)
		go func() {
			defer load.Done()
			l.Run(loadCtx)
		}()
	}
	defer func() {
		stopLoad()
		load.Wait()
	}()

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("hide-scrollbars", true),
	)...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+s.Admin+"/")); err != nil {
		t.Fatalf("opening the dashboard: %v", err)
	}
	rows := func() map[string]dashRow {
		t.Helper()
		rs, err := chromedp.Run(bctx, chromedp.Evaluate[[]dashRow](jsRows))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		out := map[string]dashRow{}
		for _, r := range rs {
			out[r.Name] = r
		}
		return out
	}
	waitRows := func(timeout time.Duration, what string, cond func(map[string]dashRow) bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			rs := rows()
			if cond(rs) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %v the page does not show %s; it shows %v", timeout, what, rs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	waitRows(30*time.Second, "the five containers ready, by name", func(rs map[string]dashRow) bool {
		for _, n := range []string{"web-1", "web-2", "web-3", "api-1", "api-2"} {
			r, ok := rs[name(n)]
			if !ok || r.State != "ready" || r.Pool != strings.SplitN(n, "-", 2)[0] {
				return false
			}
		}
		return len(rs) == 5
	})

	// docker stop: the page shows web-3 draining, or gone, within 2s. The
	// engine sends the kill event before `docker stop` returns, so on a
	// loaded machine where the command itself takes longer, the 2s count
	// from its return.
	type stopResult struct {
		at  time.Time
		err error
	}
	stopped := make(chan stopResult, 1)
	t0 := time.Now()
	go func() {
		_, err := harness.DockerErr("stop", "-t", "10", name("web-3"))
		stopped <- stopResult{time.Now(), err}
	}()
	var stop *stopResult
	for {
		rs := rows()
		if r, ok := rs[name("web-3")]; !ok || r.State == "draining" {
			t.Logf("the page showed the stop after %v", time.Since(t0).Round(time.Millisecond))
			break
		}
		select {
		case r := <-stopped:
			stop = &r
			t.Logf("docker stop returned after %v", r.at.Sub(t0).Round(time.Millisecond))
		default:
		}
		if time.Since(t0) > 2*time.Second && stop != nil && time.Since(stop.at) > 2*time.Second {
			t.Fatalf("the page does not show %s draining or gone 2s after docker stop; it shows %v", name("web-3"), rs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if stop == nil {
		r := <-stopped
		stop = &r
		t.Logf("docker stop returned after %v", r.at.Sub(t0).Round(time.Millisecond))
	}
	if stop.err != nil {
		t.Fatal(stop.err)
	}

	// The drain button drains through the API.
	btn := fmt.Sprintf(`.row.backend[data-name=%q] button.act`, name("api-2"))
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(btn))); err != nil {
		t.Fatalf("clicking drain: %v", err)
	}
	waitRows(3*time.Second, name("api-2")+" drained", func(rs map[string]dashRow) bool { return rs[name("api-2")].State == "draining" })

	// The event feed is live: it got the stop of web-3.
	deadline := time.Now().Add(5 * time.Second)
	for {
		feed, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('events').innerText`))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(feed, name("web-3")) && strings.Contains(feed, "drained by operator") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event feed does not show the stop and the drain:\n%s", feed)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The requests per second and sparklines need a few polls.
	waitRows(10*time.Second, "traffic", func(map[string]dashRow) bool {
		rps, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('s-rps').textContent`))
		return rps != "" && rps != "–" && rps != "0.00"
	})
	time.Sleep(8 * time.Second) // let the sparklines grow some samples for the picture
	png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if os.Getenv("SHOAL_UPDATE_SCREENSHOT") == "1" {
		dst := filepath.Join(harness.RepoRoot(), "docs", "dashboard.png")
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s", dst)
	}

	// Readable on a phone: no sideways scrolling at 390 px.
	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Sleep(1200*time.Millisecond),
	); err != nil {
		t.Fatal(err)
	}
	overflow, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil {
		t.Fatal(err)
	}
	if overflow {
		t.Error("the dashboard scrolls sideways on a 390 px wide phone")
	}
	if dir := os.Getenv("SHOAL_SCREENSHOT_DIR"); dir != "" {
		phone, _ := chromedp.Run(bctx, chromedp.CaptureScreenshot())
		os.WriteFile(filepath.Join(dir, "dashboard-phone.png"), phone, 0o644)
	}

	// The page still polls: undrain through the API shows on the page.
	req, _ := http.NewRequest("POST", "http://"+s.Admin+"/api/pools/api/backends/"+name("api-2")+"/undrain", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("undrain: %d", resp.StatusCode)
	}
	waitRows(3*time.Second, name("api-2")+" ready again", func(rs map[string]dashRow) bool { return rs[name("api-2")].State == "ready" })

	// shoal status reads the same API.
	var out, errOut strings.Builder
	if code := runStatus(ctx, []string{"--admin", s.Admin}, &out, &errOut, noEnv); code != 0 ||
		!strings.Contains(out.String(), name("web-1")) || strings.Contains(out.String(), name("web-3")) {
		t.Errorf("shoal status: exit %d:\n%s%s", code, out.String(), errOut.String())
	}

	// The data plane feeds the metrics.
	resp, err = http.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	var webOK float64
	for _, m := range mfs["shoal_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["pool"] == "web" && labels["class"] == "2xx" {
			webOK += m.GetCounter().GetValue()
		}
	}
	if webOK == 0 {
		t.Error("shoal_requests_total{pool=web,class=2xx} is 0 after load through the proxy")
	}
	if g := mfs["shoal_docker_connected"].GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != 1 {
		t.Errorf("shoal_docker_connected: %v", g)
	}
}

// TestDashboardToken opens the dashboard of an admin API with a token, in
// process, at /#token=...: the page takes the token from the fragment, drops
// it from the address bar, and shows the pools and the event feed.
func TestDashboardToken(t *testing.T) {
	chrome := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bl := lb.New(ctx, lb.Config{Log: zerolog.Nop(), ProbeInterval: 10 * time.Millisecond})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	addr := strings.TrimPrefix(backend.URL, "http://")
	bl.Update("file", []lb.PoolSpec{{Name: "web", Settings: lb.DefaultSettings(), Servers: []lb.Server{{ID: "file:" + addr, Name: "static-1", Address: addr}}}})
	admin := httptest.NewServer(proxy.NewAdmin(proxy.AdminConfig{Balancer: bl, Token: "t0k/en=", Log: zerolog.Nop()}))
	defer admin.Close()

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 800))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate(admin.URL+"/#token="+url.QueryEscape("t0k/en="))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs, err := chromedp.Run(bctx, chromedp.Evaluate[[]dashRow](jsRows))
		if err != nil {
			t.Fatal(err)
		}
		feed, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('events').innerText`))
		if len(rs) == 1 && rs[0].Name == "static-1" && rs[0].State == "ready" && strings.Contains(feed, "static-1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with #token the page shows %v and events %q", rs, feed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	loc, err := chromedp.Run(bctx, chromedp.Evaluate[string](`location.href + " " + sessionStorage.getItem("shoal.token")`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(loc, "#") || !strings.HasSuffix(loc, " t0k/en=") {
		t.Errorf("location and stored token: %q; want no fragment and the token stored", loc)
	}
}
