package compose_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/testdata/harness"
)

// TestCompose runs the seeds' classic setup for real: Flask replicas served
// by gunicorn on a compose bridge network, Shoal in front of them as a
// non-root container reading the Docker socket, all driven by docker-compose
// as a user would drive it.
func TestCompose(t *testing.T) {
	harness.RequireDocker(t)
	dc := requireCompose(t)
	start := time.Now()

	shoalImage := buildShoalImage(t)
	baseImage(t)

	p := &project{
		t:    t,
		bin:  dc,
		name: "shoaltest" + harness.RunID,
		port: freePort(t),
		env: []string{
			"SHOAL_TEST_IMAGE=" + shoalImage,
			"SHOAL_TEST_RUN=" + harness.RunID,
			"DOCKER_GID=" + dockerGID(t),
			"COMPOSE_DOCKER_CLI_BUILD=0", // docker-py's build: no buildx needed
		},
	}
	p.env = append(p.env, "SHOAL_PORT="+p.port, "SHOAL_TEST_PROJECT="+p.name)
	t.Cleanup(p.down)
	url := "http://127.0.0.1:" + p.port + "/"

	step := time.Now()
	p.compose(t, "build", "api")
	t.Logf("api image built in %v", since(step))

	// The waits below are generous because the machine may be shared and
	// busy; the times they took are logged.
	step = time.Now()
	p.compose(t, "up", "-d", "--scale", "api=3")
	t.Logf("up -d --scale api=3 returned after %v", since(step))
	p.waitServing(t, url, 3, 3*time.Minute)
	t.Logf("up --scale api=3: all 3 replicas serve %v after `up` started", since(step))

	t.Run("scale up to 6 under load", func(t *testing.T) {
		p.phaseLog(t)
		res := p.underLoad(t, harness.Load{URL: url, Clients: 32, PostEvery: 10, PostPath: "/echo"}, func() {
			step := time.Now()
			p.compose(t, "up", "-d", "--no-build", "--no-recreate", "--scale", "api=6")
			t.Logf("up -d --scale api=6 returned after %v", since(step))
			p.waitServing(t, url, 6, 90*time.Second)
			t.Logf("--scale api=6: all 6 replicas serve %v after the command started", since(step))
		})
		if n := len(res.ByBody); n < 6 {
			t.Errorf("the load reached %d replicas, want 6", n)
		}
		requireNoFailures(t, res)
	})

	t.Run("scale down to 2 under load", func(t *testing.T) {
		p.phaseLog(t)
		res := p.underLoad(t, harness.Load{URL: url, Clients: 32, PostEvery: 10, PostPath: "/echo"}, func() {
			step := time.Now()
			p.compose(t, "up", "-d", "--no-build", "--no-recreate", "--scale", "api=2")
			p.waitServing(t, url, 2, 60*time.Second)
			t.Logf("--scale api=2 took %v", since(step))
		})
		// No GET may fail. A POST already written to a keep-alive connection
		// that a stopping replica closes cannot be retried safely; those are
		// bounded by the clients in flight and reported (see docs/faults.md).
		if res.GetFailed > 0 || res.PostFailed > 32 {
			t.Errorf("%d GETs failed (want 0), %d POSTs failed (want at most 32): %v", res.GetFailed, res.PostFailed, res.Failures)
		}
		t.Logf("scale down: %d of %d POSTs failed", res.PostFailed, res.PostSent)
	})

	t.Run("restart api under load", func(t *testing.T) {
		p.phaseLog(t)
		before := p.hostnames(t, "api")
		// Compose restarts every replica at once: Shoal holds the requests
		// (shoal.queue_timeout in docker-compose.yml) until one is back.
		res := p.underLoad(t, harness.Load{URL: url, Clients: 32, Timeout: 60 * time.Second}, func() {
			step := time.Now()
			p.compose(t, "restart", "api")
			t.Logf("restart api returned after %v", since(step))
			p.waitServing(t, url, 2, 90*time.Second)
			t.Logf("restart api: both replicas serve again %v after the command started", since(step))
		})
		// Compose keeps the containers: same hostnames, new processes.
		if after := p.hostnames(t, "api"); !equal(before, after) {
			t.Errorf("replicas after restart = %v, want %v", after, before)
		}
		requireNoFailures(t, res)
	})

	t.Run("restart shoal", func(t *testing.T) {
		p.phaseLog(t)
		// Shoal keeps no state: after a restart it lists the containers
		// again and routes to those that are ready.
		step := time.Now()
		p.compose(t, "restart", "-t", "10", "shoal")
		p.waitServing(t, url, 2, 60*time.Second)
		t.Logf("restart shoal: both replicas serve again %v after the command started", since(step))
	})

	t.Run("docker kill one replica under load", func(t *testing.T) {
		p.phaseLog(t)
		ids := p.ids(t, "api")
		if len(ids) != 2 {
			t.Fatalf("want 2 api containers, have %v", ids)
		}
		victim, survivor := ids[0], harness.Hostname(t, ids[1])
		res := p.underLoad(t, harness.Load{URL: url, Clients: 32}, func() {
			harness.Docker(t, "kill", victim)
			p.waitServing(t, url, 1, 30*time.Second)
		})
		// What counts is that the rest keep serving; GETs are retried on
		// another backend, so a failure here is one that got no retry.
		if res.GetFailed > 0 {
			t.Errorf("%d GETs failed while a replica was killed: %s", res.GetFailed, res)
		}
		got := spread(url, 20)
		if len(got.errs) > 0 || len(got.hosts) != 1 || got.hosts[survivor] != 20 {
			t.Errorf("after the kill: %d of 20 GETs from %s wanted, got %v, errors %v", 20, survivor, got.hosts, got.errs)
		}
	})

	t.Run("down -v leaves nothing", func(t *testing.T) {
		step := time.Now()
		p.compose(t, "down", "-v", "--remove-orphans", "--rmi", "local", "-t", "10")
		t.Logf("down -v took %v", since(step))
		for _, kind := range []string{"container", "network", "volume"} {
			if left := p.leftovers(kind); len(left) > 0 {
				t.Errorf("after down -v, %ss of project %s remain: %v", kind, p.name, left)
			}
		}
	})
	t.Logf("TestCompose took %v in all", since(start))
}

// project is one docker-compose project of the test, named shoaltest<run id>.
type project struct {
	t    *testing.T
	bin  string   // docker-compose
	name string   // -p
	port string   // published host port of Shoal
	env  []string // besides the environment of the test
}

// compose runs docker-compose with the user-facing file and the test
// override, and fails the test on error.
func (p *project) compose(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.composeErr(args...)
	if err != nil {
		t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (p *project) composeErr(args ...string) (string, error) {
	all := append([]string{"-p", p.name, "-f", "docker-compose.yml", "-f", "docker-compose.test.yml", "--ansi", "never"}, args...)
	cmd := exec.Command(p.bin, all...)
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// down removes everything of the project; it runs in cleanup, also after a
// failed test, when Shoal's log is printed first.
func (p *project) down() {
	if p.t.Failed() {
		if out, err := p.composeErr("logs", "--no-color", "shoal"); err == nil {
			p.t.Logf("shoal's log, without access lines and per-request failures, last 200 lines:\n%s", lastLines(out, 200, `"component":"access"`, `"message":"request failed"`))
		}
		if out, err := p.composeErr("ps"); err == nil {
			p.t.Logf("docker-compose ps:\n%s", out)
		}
	}
	if out, err := p.composeErr("down", "-v", "--remove-orphans", "--rmi", "local", "-t", "5"); err != nil {
		p.t.Errorf("cleanup: docker-compose down: %v\n%s", err, out)
	}
	// Anything compose missed, by the project's label.
	for _, kind := range []string{"container", "network"} {
		for _, id := range p.leftovers(kind) {
			if kind == "container" {
				harness.DockerErr("rm", "-f", "-v", id)
			} else {
				harness.DockerErr("network", "rm", id)
			}
		}
	}
}

// leftovers lists the project's containers, networks or volumes that exist.
func (p *project) leftovers(kind string) []string {
	filter := "label=com.docker.compose.project=" + p.name
	var out string
	var err error
	switch kind {
	case "container":
		out, err = harness.DockerErr("ps", "-aq", "--filter", filter)
	default:
		out, err = harness.DockerErr(kind, "ls", "-q", "--filter", filter)
	}
	if err != nil {
		p.t.Errorf("listing %ss: %v", kind, err)
	}
	return strings.Fields(out)
}

// phaseLog logs, when the (sub)test ends, Shoal's backend transitions of
// the phase (discovered, starting -> ready, draining, down, removed), and on
// failure the rest of its log too, less access lines and with per-request
// failures only counted.
func (p *project) phaseLog(t *testing.T) {
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	t.Cleanup(func() {
		ids, _ := p.composeErr("ps", "-q", "shoal")
		for _, id := range strings.Fields(ids) {
			out, _ := exec.Command("docker", "logs", "--since", since, id).CombinedOutput()
			var lb, other, sample []string
			failed := 0
			for _, l := range strings.Split(string(out), "\n") {
				switch {
				case l == "" || strings.Contains(l, `"component":"access"`):
				case strings.Contains(l, `"message":"request failed"`):
					if failed++; failed <= 5 {
						sample = append(sample, l)
					}
				case strings.Contains(l, `"component":"lb"`):
					lb = append(lb, l)
				default:
					other = append(other, l)
				}
			}
			t.Logf("shoal's backend transitions during %s:\n%s", t.Name(), strings.Join(lb, "\n"))
			if t.Failed() {
				if len(other) > 100 {
					other = other[len(other)-100:]
				}
				t.Logf("shoal logged %d failed requests, the first ones:\n%s\nits other lines:\n%s", failed, strings.Join(sample, "\n"), strings.Join(other, "\n"))
			}
		}
	})
}

// ids are the service's containers, running or not, sorted.
func (p *project) ids(t *testing.T, service string) []string {
	t.Helper()
	ids := strings.Fields(p.compose(t, "ps", "-q", service))
	sort.Strings(ids)
	return ids
}

// hostnames maps the service's running containers' hostnames, which the
// Flask app answers with, to true.
func (p *project) hostnames(t *testing.T, service string) map[string]bool {
	t.Helper()
	out := harness.Docker(t, "ps", "-q", "--filter", "label=com.docker.compose.project="+p.name,
		"--filter", "label=com.docker.compose.service="+service, "--filter", "status=running")
	hs := map[string]bool{}
	for _, id := range strings.Fields(out) {
		hs[harness.Hostname(t, id)] = true
	}
	return hs
}

// waitServing waits until Shoal answers from exactly the n running api
// replicas: every one of them is seen and no other.
func (p *project) waitServing(t *testing.T, url string, n int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var want map[string]bool
	var last result
	harness.Eventually(t, timeout, func() bool {
		want = p.hostnames(t, "api")
		if len(want) != n {
			return false
		}
		last = spread(url, 4*n)
		if len(last.errs) > 0 || len(last.hosts) != n {
			return false
		}
		for h := range last.hosts {
			if !want[h] {
				return false
			}
		}
		return true
	}, "Shoal does not serve from exactly the %d running replicas: %v", n, lazy(func() string {
		return fmt.Sprintf("running %v, last answers %v, errors %v", keys(want), last.hosts, last.errs)
	}))
	return since(start)
}

// lazy formats when printed, so that a failure message shows the last state.
type lazy func() string

func (l lazy) String() string { return l() }

// underLoad runs load while action runs, from a second before it until two
// seconds after it returns, and logs the counts.
func (p *project) underLoad(t *testing.T, l harness.Load, action func()) *harness.Result {
	t.Helper()
	l.Duration = 3 * time.Minute // ended by cancel below
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *harness.Result, 1)
	go func() { done <- l.Run(ctx) }()
	time.Sleep(time.Second) // traffic before the change, not a synchronisation
	action()
	time.Sleep(2 * time.Second) // and after it
	cancel()
	res := <-done
	t.Logf("%s: %s", t.Name(), res)
	t.Logf("%s: GETs by replica: %v", t.Name(), byHostname(res.ByBody))
	return res
}

func requireNoFailures(t *testing.T, res *harness.Result) {
	t.Helper()
	if res.Failed() > 0 {
		t.Errorf("%d of %d requests failed: %v", res.Failed(), res.Sent, res.Failures)
	}
	if res.OK == 0 {
		t.Errorf("no request succeeded")
	}
}

// result counts the answers of a few sequential GETs by hostname.
type result struct {
	hosts map[string]int
	errs  []string
}

var client = &http.Client{Timeout: 5 * time.Second}

func spread(url string, n int) result {
	r := result{hosts: map[string]int{}}
	for i := 0; i < n; i++ {
		code, body, err := harness.Get(client, url)
		switch {
		case err != nil:
			r.errs = append(r.errs, err.Error())
		case code != 200:
			r.errs = append(r.errs, fmt.Sprintf("status %d: %.200s", code, body))
		default:
			h, err := hostname(body)
			if err != nil {
				r.errs = append(r.errs, err.Error())
				continue
			}
			r.hosts[h]++
		}
	}
	return r
}

// hostname reads the replica's hostname from the Flask app's GET / answer.
func hostname(body string) (string, error) {
	var v struct {
		Hostname string `json:"hostname"`
		Version  string `json:"version"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Hostname == "" {
		return "", fmt.Errorf("not the Flask app's answer: %.200q", body)
	}
	return v.Hostname, nil
}

func byHostname(bodies map[string]int) map[string]int {
	out := map[string]int{}
	for b, n := range bodies {
		h, err := hostname(b)
		if err != nil {
			h = "?"
		}
		out[h] += n
	}
	return out
}

// requireCompose finds docker-compose (v1): CI installs it, so a missing one
// fails the test rather than skipping it.
func requireCompose(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose is required for this test (apt-get install docker-compose): %v", err)
	}
	out, err := exec.Command(bin, "version", "--short").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v: %s", bin, err, out)
	}
	t.Logf("docker-compose %s", strings.TrimSpace(string(out)))
	return bin
}

// buildShoalImage does what `make image` does, into a tag of this run that
// is removed in cleanup: bin/shoal built with CGO_ENABLED=0, then the
// repository's Dockerfile, with a context of just the binary.
func buildShoalImage(t *testing.T) string {
	t.Helper()
	step := time.Now()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "bin", "shoal"), "./cmd/shoal")
	build.Dir = harness.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building shoal: %v\n%s", err, out)
	}
	df, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), df, 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "shoaltest-shoal:" + harness.RunID
	harness.Docker(t, "build", "-q", "--label", harness.RunLabel+"="+harness.RunID, "-t", tag, dir)
	t.Cleanup(func() { harness.DockerErr("rmi", tag) })
	t.Logf("shoal image %s built in %v", tag, since(step))
	return tag
}

// baseImage runs flask/base-image.sh, which builds shoal-flask-base:local
// from Debian packages the first time (a few minutes) and is a no-op after.
func baseImage(t *testing.T) {
	t.Helper()
	step := time.Now()
	cmd := exec.Command("sh", "flask/base-image.sh")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			t.Log(sc.Text()) // progress of the first build, as it happens
		}
	}()
	err := cmd.Wait()
	pw.Close()
	<-lines
	if err != nil {
		t.Fatalf("flask/base-image.sh: %v", err)
	}
	t.Logf("base image ready in %v", since(step))
}

func dockerGID(t *testing.T) string {
	t.Helper()
	fi, err := os.Stat("/var/run/docker.sock")
	if err != nil {
		t.Fatalf("the Docker socket: %v", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Fatalf("cannot read the Docker socket's group on %T", fi.Sys())
	}
	return fmt.Sprint(st.Gid)
}

func freePort(t *testing.T) string {
	t.Helper()
	_, port, err := net.SplitHostPort(harness.FreePort(t))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func equal(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// lastLines returns the last n lines of s that contain none of skip.
func lastLines(s string, n int, skip ...string) string {
	var keep []string
lines:
	for _, l := range strings.Split(s, "\n") {
		for _, k := range skip {
			if strings.Contains(l, k) {
				continue lines
			}
		}
		keep = append(keep, l)
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n")
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }
