package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SocketProxy forwards TCP connections on a loopback port to the Docker
// engine's unix socket, so that a test can cut Shoal's connection to the
// engine and restore it while the engine itself keeps running. Give Shoal
// Env() as its DOCKER_HOST. It is closed in cleanup.
type SocketProxy struct {
	Addr   string // 127.0.0.1:port
	socket string
	ln     net.Listener

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	cut      bool
	accepted int // connections forwarded so far
	refused  int // connections closed at once while cut
}

// StartSocketProxy listens on a free loopback port and forwards to the
// engine's socket: the unix:// path of DOCKER_HOST, else
// /var/run/docker.sock.
func StartSocketProxy(t testing.TB) *SocketProxy {
	t.Helper()
	RequireDocker(t)
	socket := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		socket = strings.TrimPrefix(h, "unix://")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &SocketProxy{Addr: ln.Addr().String(), socket: socket, ln: ln, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.serve()
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		p.closeAll()
	})
	return p
}

// Env is the DOCKER_HOST setting that points a Docker client at the proxy.
func (p *SocketProxy) Env() string { return "DOCKER_HOST=tcp://" + p.Addr }

// Cut closes every proxied connection, event streams included, and closes
// new connections at once until Restore.
func (p *SocketProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
	p.closeAll()
}

// Restore forwards new connections again.
func (p *SocketProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Stats returns how many connections were forwarded and how many were
// refused while cut.
func (p *SocketProxy) Stats() (accepted, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused
}

func (p *SocketProxy) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (p *SocketProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.refused++
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.accepted++
		p.mu.Unlock()
		go p.forward(c)
	}
}

// forward copies both ways between c and a new engine connection; either
// side closing closes both.
func (p *SocketProxy) forward(c net.Conn) {
	e, err := net.Dial("unix", p.socket)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut { // cut between Accept and here
		p.mu.Unlock()
		c.Close()
		e.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.conns[e] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(e, c); done <- struct{}{} }() // client -> engine
	go func() { io.Copy(c, e); done <- struct{}{} }() // engine -> client
	<-done
	c.Close()
	e.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, e)
	p.mu.Unlock()
}

// LoadRun is a load run in the background; Stop ends it and returns the
// result.
type LoadRun struct {
	cancel context.CancelFunc
	done   chan *Result
}

// StartLoad runs l in the background until Stop, or until l.Duration passes
// (default 10s: set it as a safety cap above the scenario's length).
func StartLoad(l Load) *LoadRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &LoadRun{cancel: cancel, done: make(chan *Result, 1)}
	go func() { r.done <- l.Run(ctx) }()
	return r
}

// Stop ends the run: clients finish the request they are in, send no more,
// and the result counts every request that got an answer or an error.
func (r *LoadRun) Stop() *Result {
	r.cancel()
	return <-r.done
}

// Metric sums every sample of the Prometheus counter or gauge name on a
// Shoal admin listener, whatever its labels; -1 when the admin does not
// answer.
func Metric(admin, name string) float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // a longer name with the same prefix
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// WaitRequests waits until Shoal has answered n more requests than it had
// when WaitRequests was called: a way to let a fault run under load for an
// amount of traffic rather than for a guessed time.
func WaitRequests(t testing.TB, admin string, n int, timeout time.Duration) {
	t.Helper()
	start := Metric(admin, "shoal_requests_total")
	Eventually(t, timeout, func() bool {
		return Metric(admin, "shoal_requests_total") >= start+float64(n)
	}, "Shoal did not answer %d more requests", n)
}

// BackendState is one backend as Shoal's admin API reports it.
type BackendState struct {
	Pool, Name, State, Reason string
	Requests                  uint64
}

// States returns every backend Shoal knows, by container name; nil when
// the admin API does not answer.
func States(admin string) map[string]BackendState {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + admin + "/api/pools")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var rep struct {
		Pools []struct {
			Name     string `json:"name"`
			Backends []struct {
				Name     string `json:"name"`
				State    string `json:"state"`
				Reason   string `json:"reason"`
				Requests uint64 `json:"requests"`
			} `json:"backends"`
		} `json:"pools"`
	}
	if json.NewDecoder(resp.Body).Decode(&rep) != nil {
		return nil
	}
	out := map[string]BackendState{}
	for _, p := range rep.Pools {
		for _, b := range p.Backends {
			out[b.Name] = BackendState{Pool: p.Name, Name: b.Name, State: b.State, Reason: b.Reason, Requests: b.Requests}
		}
	}
	return out
}

// ContainerName is the container's name without the leading slash, which
// is the backend's name in Shoal.
func ContainerName(t testing.TB, id string) string {
	t.Helper()
	return strings.TrimPrefix(Docker(t, "inspect", "-f", "{{.Name}}", id), "/")
}

var (
	hcImageOnce sync.Once
	hcImageErr  error
)

// HealthcheckImage is BackendImage with an exec-form HEALTHCHECK on its
// /health (every 500ms, unhealthy after one failure, default start period).
const HealthcheckImage = "shoal-test-backend-hc:latest"

// BuildHealthcheckImage builds HealthcheckImage once per process. It exists
// because `docker run --health-cmd` always runs its command through
// /bin/sh, which the FROM-scratch backend image does not have; only a
// Dockerfile HEALTHCHECK can use the exec form.
func BuildHealthcheckImage(t testing.TB) string {
	t.Helper()
	base := BuildBackendImage(t)
	hcImageOnce.Do(func() {
		hcImageErr = buildImage(HealthcheckImage, "FROM "+base+"\n"+
			"HEALTHCHECK --interval=500ms --timeout=2s --retries=1 "+
			"CMD [\"/backend\", \"-check\", \"http://127.0.0.1:8000/health\"]\n", nil)
	})
	if hcImageErr != nil {
		t.Fatal(hcImageErr)
	}
	return HealthcheckImage
}

// RunMany starts n copies of c at once (docker run is slow on a busy
// engine, and a scale-up is concurrent in real life) and returns their IDs.
// They are removed in cleanup.
func RunMany(t testing.TB, n int, c Container) []string {
	t.Helper()
	if c.Image == "" {
		c.Image = BuildBackendImage(t)
	}
	args := []string{"run", "-d", "--label", RunLabel + "=" + RunID, "--network", c.Network}
	for k, v := range c.Labels {
		args = append(args, "--label", k+"="+v)
	}
	for _, e := range c.Env {
		args = append(args, "-e", e)
	}
	args = append(args, c.Extra...)
	args = append(args, c.Image)
	args = append(args, c.Args...)
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = DockerErr(args...)
		}()
	}
	wg.Wait()
	for i, id := range ids {
		if id != "" {
			t.Cleanup(func() { DockerErr("rm", "-f", "-v", id) })
		}
		if errs[i] != nil {
			t.Fatalf("docker run: %v", errs[i])
		}
	}
	return ids
}
