package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/rs/zerolog"
	"github.com/shoal-lb/shoal/discovery"
	"github.com/shoal-lb/shoal/lb"
	"github.com/shoal-lb/shoal/proxy"
	"github.com/shoal-lb/shoal/testdata/harness"
)

// The fault suite: real containers behind a real Shoal, 32 clients of load,
// and one fault per scenario. Each scenario logs what the clients saw (sent,
// failed by kind, p50, p99); docs/faults.md records a run. The pacing below
// (hold) is load running for a while, not synchronisation: every step that
// depends on Shoal having noticed something polls for it with a deadline.

const faultClients = 32

// faultRig is one scenario's world: its own network, replicas of pool
// "app", and a Shoal that discovers them.
type faultRig struct {
	t   *testing.T
	net string
	s   *harness.Shoal
	t0  time.Time // start of the load
}

// newFaultRig starts n replicas and a Shoal (with env and args), and waits
// until every replica serves through it. It returns the replicas' IDs.
func newFaultRig(t *testing.T, n int, env []string, args ...string) (*faultRig, []string) {
	t.Helper()
	r := &faultRig{t: t, net: harness.NewNetwork(t)}
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, r.replica(harness.Container{}))
	}
	r.s = harness.StartShoal(t, env, append([]string{"--network", r.net, "--access-log=false"}, args...)...)
	var hosts []string
	for _, id := range ids {
		hosts = append(hosts, harness.Hostname(t, id))
	}
	waitServing(t, r.s.URL()+"/", hosts)
	return r, ids
}

// replica starts one backend of pool "app" on the rig's network.
func (r *faultRig) replica(c harness.Container) string {
	r.t.Helper()
	c.Network = r.net
	if c.Labels == nil {
		c.Labels = labels("app")
	}
	return harness.Run(r.t, c)
}

// load starts the scenario's traffic; Duration is only a safety cap, the
// scenario stops it.
func (r *faultRig) load(postEvery int) *harness.LoadRun {
	r.t0 = time.Now()
	return harness.StartLoad(harness.Load{URL: r.s.URL() + "/", Clients: faultClients, Duration: 90 * time.Second, PostEvery: postEvery})
}

// step logs a scenario step with the time since the load started.
func (r *faultRig) step(format string, args ...any) {
	r.t.Helper()
	r.t.Logf("%6.1fs "+format, append([]any{time.Since(r.t0).Seconds()}, args...)...)
}

// hold lets the load run for d, and checks that Shoal answered requests
// meanwhile.
func (r *faultRig) hold(d time.Duration) {
	r.t.Helper()
	t0 := time.Now()
	m0 := harness.Metric(r.s.Admin, "shoal_requests_total")
	harness.Eventually(r.t, d+30*time.Second, func() bool {
		return time.Since(t0) >= d && harness.Metric(r.s.Admin, "shoal_requests_total") >= m0+10
	}, "Shoal answered no requests while holding for %v", d)
}

// state is what Shoal says about the container id: its state, or "" when
// Shoal does not know it.
func (r *faultRig) state(name string) string {
	return harness.States(r.s.Admin)[name].State
}

// waitState waits until Shoal reports the backend named name in one of
// states ("" = gone).
func (r *faultRig) waitState(name string, timeout time.Duration, states ...string) {
	r.t.Helper()
	harness.Eventually(r.t, timeout, func() bool {
		got := r.state(name)
		for _, s := range states {
			if got == s {
				return true
			}
		}
		return false
	}, "backend %s never reached state %q (now %q)", name, states, r.state(name))
}

// report logs the figures of a scenario, in the form docs/faults.md quotes.
func (r *faultRig) report(scenario string, res *harness.Result, took time.Duration) {
	r.t.Helper()
	retries := harness.Metric(r.s.Admin, "shoal_retries_total")
	r.t.Logf("FIGURES %-28s %v in %v; shoal retries=%.0f", scenario+":", res, took.Round(100*time.Millisecond), retries)
}

func TestFaultScaleUpAndDown(t *testing.T) {
	r, ids := newFaultRig(t, 1, nil)
	start := time.Now()
	run := r.load(0)
	r.hold(time.Second)
	added := harness.RunMany(t, 4, harness.Container{Network: r.net, Labels: labels("app")})
	r.step("docker run ×4 returned")
	for _, id := range added {
		r.waitState(harness.ContainerName(t, id), 15*time.Second, "ready")
	}
	r.step("5 replicas ready")
	r.hold(3 * time.Second)
	var names []string
	for _, id := range added {
		names = append(names, harness.ContainerName(t, id))
	}
	r.step("docker stop ×4")
	harness.Docker(t, append([]string{"stop", "-t", "10"}, added...)...)
	r.step("docker stop ×4 returned")
	for _, n := range names {
		r.waitState(n, 15*time.Second, "")
	}
	r.step("1 replica left")
	r.hold(2 * time.Second)
	res := run.Stop()
	r.report("scale 1→5→1", res, time.Since(start))
	if res.Failed() != 0 {
		t.Errorf("scaling 1→5→1 failed %d requests: %v", res.Failed(), res)
	}
	for _, id := range append(ids, added...) {
		if h := harness.Hostname(t, id); res.ByBody[h] == 0 {
			t.Errorf("replica %s never served: %v", h, res.ByBody)
		}
	}
}

func TestFaultRollingReplace(t *testing.T) {
	r, old := newFaultRig(t, 3, nil)
	freed := map[string]string{} // IP -> the stopped replica that had it
	start := time.Now()
	run := r.load(0)
	r.hold(time.Second)
	var fresh []string
	var notReady []string
	for _, id := range old {
		n := r.replica(harness.Container{})
		fresh = append(fresh, n)
		name := harness.ContainerName(t, n)
		r.waitState(name, 15*time.Second, "ready", "down")
		r.hold(500 * time.Millisecond)
		if st := harness.States(r.s.Admin)[name]; st.State != "ready" {
			ip := harness.IP(t, n, r.net)
			reuse := ""
			if was, ok := freed[ip]; ok {
				reuse = " (an address the stopped replica " + was + " had)"
			}
			notReady = append(notReady, name+" at "+ip+reuse+": "+st.State+" ("+st.Reason+")")
		}
		r.step("new replica %s: %s", name, r.state(name))
		oldName := harness.ContainerName(t, id)
		freed[harness.IP(t, id, r.net)] = oldName
		harness.Docker(t, "stop", "-t", "10", id)
		r.waitState(oldName, 15*time.Second, "")
		r.step("old replica %s stopped and gone", oldName)
	}
	r.hold(2 * time.Second)
	res := run.Stop()
	r.report("rolling replace of 3", res, time.Since(start))
	if res.Failed() != 0 {
		t.Errorf("the rolling replace failed %d requests: %v", res.Failed(), res)
	}
	// A new container may get the IP of one just removed. Shoal must not
	// hold that against it: keep-alive connections pooled for the old
	// container are reset by the new one, and must not count as its
	// failures.
	for _, n := range notReady {
		t.Errorf("new replica not in rotation half a second after discovery: %s", n)
	}
	for _, id := range fresh {
		if h := harness.Hostname(t, id); res.ByBody[h] == 0 {
			t.Errorf("new replica %s never served: %v", h, res.ByBody)
		}
	}
}

// killOne runs the SIGKILL scenario; postEvery > 0 mixes in POSTs.
func killOne(t *testing.T, postEvery int) *harness.Result {
	r, ids := newFaultRig(t, 3, nil)
	start := time.Now()
	run := r.load(postEvery)
	r.hold(2 * time.Second)
	victim := harness.ContainerName(t, ids[0])
	r.step("docker kill -s KILL")
	harness.Docker(t, "kill", "-s", "KILL", ids[0])
	r.step("docker kill returned")
	r.waitState(victim, 15*time.Second, "")
	r.step("killed replica gone from Shoal")
	r.hold(3 * time.Second)
	res := run.Stop()
	what := "kill -s KILL, GETs"
	if postEvery > 0 {
		what = "kill -s KILL, GETs+POSTs"
	}
	r.report(what, res, time.Since(start))
	return res
}

func TestFaultKillGET(t *testing.T) {
	res := killOne(t, 0)
	if res.Failed() != 0 {
		t.Errorf("SIGKILL of one of 3 replicas failed %d GETs: %v", res.Failed(), res)
	}
}

func TestFaultKillWithPOST(t *testing.T) {
	res := killOne(t, 4)
	if res.GetFailed != 0 {
		t.Errorf("SIGKILL of one of 3 replicas failed %d GETs: %v", res.GetFailed, res)
	}
	// A POST that reached the killed backend is not retried (it may have
	// had an effect), so those in flight at the kill fail: at most one per
	// client, since each client has one request in flight.
	if res.PostFailed > faultClients {
		t.Errorf("%d POSTs failed, more than the %d that can be in flight at the kill: %v", res.PostFailed, faultClients, res)
	}
	t.Logf("POSTs failed at the kill: %d of %d sent (bound %d)", res.PostFailed, res.PostSent, faultClients)
}

func TestFaultSlowStartingApp(t *testing.T) {
	r, _ := newFaultRig(t, 2, nil)
	start := time.Now()
	run := r.load(0)
	r.hold(time.Second)
	ran := time.Now()
	id := r.replica(harness.Container{Env: []string{"DELAY_START=2s"}})
	name := harness.ContainerName(t, id)
	r.waitState(name, 20*time.Second, "starting", "ready")
	r.step("Shoal found the late replica: %s", r.state(name))
	if st := r.state(name); st == "ready" && time.Since(ran) < 2*time.Second {
		t.Errorf("a replica that listens only after 2s was ready at once")
	}
	r.waitState(name, 20*time.Second, "ready")
	r.step("the late replica is ready")
	t.Logf("the replica with DELAY_START=2s became ready %v after docker run was called", time.Since(ran).Round(10*time.Millisecond))
	r.hold(2 * time.Second)
	res := run.Stop()
	r.report("app listens after 2s", res, time.Since(start))
	if res.Failed() != 0 {
		t.Errorf("a replica that starts listening late failed %d requests: %v", res.Failed(), res)
	}
	if h := harness.Hostname(t, id); res.ByBody[h] == 0 {
		t.Errorf("the late replica %s never served: %v", h, res.ByBody)
	}
}

func TestFaultDockerHealthcheck(t *testing.T) {
	r, _ := newFaultRig(t, 2, nil)
	// An exec-form HEALTHCHECK baked into the image: `docker run
	// --health-cmd` would need a shell, which the scratch image lacks.
	id := r.replica(harness.Container{Image: harness.BuildHealthcheckImage(t)})
	name := harness.ContainerName(t, id)
	r.waitState(name, 20*time.Second, "ready")
	admin := "http://" + harness.IP(t, id, r.net) + ":8000/admin/health?ok="
	toggle := func(ok string) {
		t.Helper()
		resp, err := http.Get(admin + ok)
		if err != nil {
			t.Fatalf("toggling the replica's health through its container IP: %v", err)
		}
		resp.Body.Close()
	}
	requests := func() uint64 { return harness.States(r.s.Admin)[name].Requests }

	start := time.Now()
	run := r.load(0)
	r.hold(time.Second)
	toggle("0")
	r.step("/health turned failing")
	r.waitState(name, 15*time.Second, "down")
	r.step("Shoal marked it down")
	// Requests picked just before the transition may still land; let them.
	harness.WaitRequests(t, r.s.Admin, 200, 10*time.Second)
	atDown := requests()
	r.hold(2 * time.Second)
	if n := requests() - atDown; n != 0 {
		t.Errorf("the unhealthy replica got %d requests while Docker said unhealthy", n)
	}
	toggle("1")
	r.step("/health turned passing")
	r.waitState(name, 15*time.Second, "ready")
	r.step("Shoal marked it ready")
	atUp := requests()
	r.hold(1500 * time.Millisecond)
	if requests() == atUp {
		t.Errorf("the replica got no traffic after it was healthy again")
	}
	res := run.Stop()
	r.report("HEALTHCHECK unhealthy→healthy", res, time.Since(start))
	if res.Failed() != 0 {
		t.Errorf("%d requests failed: %v", res.Failed(), res)
	}
}

func TestFaultPauseUnpause(t *testing.T) {
	r, ids := newFaultRig(t, 3, nil)
	victim := harness.ContainerName(t, ids[0])
	start := time.Now()
	run := r.load(0)
	r.hold(time.Second)
	harness.Docker(t, "pause", ids[0])
	r.step("docker pause returned")
	r.waitState(victim, 10*time.Second, "draining")
	r.step("Shoal drains it")
	r.hold(2 * time.Second)
	harness.Docker(t, "unpause", ids[0])
	r.step("docker unpause returned")
	r.waitState(victim, 10*time.Second, "ready")
	r.step("Shoal has it ready again")
	atUp := harness.States(r.s.Admin)[victim].Requests
	r.hold(1500 * time.Millisecond)
	if harness.States(r.s.Admin)[victim].Requests == atUp {
		t.Errorf("the unpaused replica got no traffic")
	}
	res := run.Stop()
	r.report("pause 2s, unpause", res, time.Since(start))
	if res.Failed() != 0 {
		t.Errorf("pause/unpause failed %d requests: %v", res.Failed(), res)
	}
}

func TestFaultDockerAPICut(t *testing.T) {
	sp := harness.StartSocketProxy(t)
	r, ids := newFaultRig(t, 3, []string{sp.Env()})
	connected := func() int { return strings.Count(r.s.Log(), `"connected to the Docker engine"`) }
	if n := connected(); n != 1 {
		t.Fatalf("want one connection to the engine at start, the log has %d", n)
	}
	gone := harness.ContainerName(t, ids[0])
	start := time.Now()
	run := r.load(0)
	r.hold(time.Second)

	sp.Cut()
	cutAt := time.Now()
	r.step("Docker API cut")
	harness.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(r.s.Log(), "Docker engine unreachable")
	}, "Shoal did not notice that the Docker API connection was cut")
	// While Shoal is blind: one replica is added and one stopped.
	added := r.replica(harness.Container{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); harness.DockerErr("stop", "-t", "10", ids[0]) }()
	r.hold(3 * time.Second)
	wg.Wait()
	if st := r.state(harness.ContainerName(t, added)); st != "" {
		t.Errorf("Shoal found the new replica (%s) while cut off from the engine", st)
	}
	sp.Restore()
	r.step("Docker API restored")
	cutFor := time.Since(cutAt)

	harness.Eventually(t, 15*time.Second, func() bool { return connected() == 2 },
		"Shoal did not reconnect to the engine after the cut")
	r.step("Shoal reconnected")
	r.waitState(harness.ContainerName(t, added), 15*time.Second, "ready")
	r.waitState(gone, 15*time.Second, "")
	r.step("replica added during the cut ready, stopped one gone")
	r.hold(2 * time.Second)
	res := run.Stop()
	acc, ref := sp.Stats()
	t.Logf("socket proxy: %d connections forwarded, %d refused while cut; the cut lasted %v", acc, ref, cutFor.Round(100*time.Millisecond))
	r.report("Docker API cut", res, time.Since(start))
	if res.Failed() != 0 {
		t.Errorf("%d requests failed while the Docker API was cut: %v", res.Failed(), res)
	}
	if h := harness.Hostname(t, added); res.ByBody[h] == 0 {
		t.Errorf("the replica added during the cut never served: %v", res.ByBody)
	}
}

// noDrainAPI hides the "stop" and "kill" events from discovery, so that
// Shoal learns of a stopping container only when it dies: scaling down as
// it would go without draining. It exists for BenchmarkScaleDownDrain only.
type noDrainAPI struct{ discovery.DockerAPI }

func (a noDrainAPI) Events(ctx context.Context, o events.ListOptions) (<-chan events.Message, <-chan error) {
	in, errs := a.DockerAPI.Events(ctx, o)
	out := make(chan events.Message)
	go func() {
		defer close(out)
		for m := range in {
			if m.Action == events.ActionStop || m.Action == events.ActionKill {
				continue
			}
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errs
}

// BenchmarkScaleDownDrain measures what draining saves: 5 replicas scaled
// down to 1 with docker stop under GET+POST load, with Shoal's usual
// draining and with the stop/kill events hidden. It runs Shoal in process
// (lb, proxy, discovery against the real engine) and is not part of
// `make test`:
//
//	go test -run '^$' -bench ScaleDownDrain -benchtime 1x ./cmd/shoal/
func BenchmarkScaleDownDrain(b *testing.B) {
	for _, drain := range []bool{true, false} {
		name := "drain"
		if !drain {
			name = "no-drain"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				res := scaleDownInProcess(b, drain)
				b.ReportMetric(float64(res.Failed()), "failed")
				b.ReportMetric(float64(res.PostFailed), "posts-failed")
				b.ReportMetric(float64(res.P99.Milliseconds()), "p99-ms")
				b.Logf("%s: %v", name, res)
			}
		})
	}
}

func scaleDownInProcess(b *testing.B, drain bool) *harness.Result {
	b.Helper()
	nw := harness.NewNetwork(b)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, harness.Run(b, harness.Container{Network: nw, Labels: labels("app")}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bl := lb.New(ctx, lb.Config{Log: zerolog.Nop()})
	px := proxy.New(proxy.Config{Tables: bl, Log: zerolog.Nop()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := px.Server(proxy.ServerConfig{})
	go srv.Serve(ln)
	defer srv.Shutdown()
	api, err := discovery.NewDockerClient()
	if err != nil {
		b.Fatal(err)
	}
	defer api.Close()
	var dapi discovery.DockerAPI = api
	if !drain {
		dapi = noDrainAPI{api}
	}
	d := discovery.NewDocker(discovery.DockerConfig{API: dapi, Sink: bl, Log: zerolog.Nop(), Network: nw})
	go d.Run(ctx)
	ready := func() int {
		n := 0
		if p := bl.Table().Pools["app"]; p != nil {
			for _, be := range p.Backends() {
				if be.State() == lb.StateReady {
					n++
				}
			}
		}
		return n
	}
	harness.Eventually(b, 30*time.Second, func() bool { return ready() == 5 }, "5 replicas never ready")
	run := harness.StartLoad(harness.Load{URL: "http://" + ln.Addr().String() + "/", Clients: faultClients, Duration: 60 * time.Second, PostEvery: 4})
	t0 := time.Now()
	harness.Eventually(b, 10*time.Second, func() bool { return time.Since(t0) > 2*time.Second }, "")
	harness.Docker(b, append([]string{"stop", "-t", "10"}, ids[1:]...)...)
	harness.Eventually(b, 30*time.Second, func() bool { return len(bl.Table().Pools["app"].Backends()) == 1 }, "stopped replicas never removed")
	t1 := time.Now()
	harness.Eventually(b, 10*time.Second, func() bool { return time.Since(t1) > 2*time.Second }, "")
	return run.Stop()
}
