package harness

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// ShoalBinary builds cmd/shoal once per test process and returns its path.
func ShoalBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shoal-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "shoal")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "./cmd/shoal")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building shoal: %v: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// Shoal is a Shoal process started by a test.
type Shoal struct {
	Addr  string // the proxy listener, 127.0.0.1:port
	Admin string // the admin listener, 127.0.0.1:port
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan struct{}
}

// FreePort returns a loopback address with a port that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartShoal runs the shoal binary with args plus --listen and --admin on
// free loopback ports, waits until its /healthz answers, and stops it in
// cleanup. Its log is printed if the test fails.
func StartShoal(t testing.TB, env []string, args ...string) *Shoal {
	t.Helper()
	s := &Shoal{Addr: FreePort(t), Admin: FreePort(t), out: &syncBuffer{}, done: make(chan struct{})}
	all := append([]string{"--listen", s.Addr, "--admin", s.Admin, "--log-format", "json"}, args...)
	s.cmd = exec.Command(ShoalBinary(t), all...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("shoal log:\n%s", s.Log())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + s.Admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("shoal exited at start:\n%s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("shoal did not become ready:\n%s", s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the proxy's base URL.
func (s *Shoal) URL() string { return "http://" + s.Addr }

// Log is what the process has printed so far.
func (s *Shoal) Log() string { return s.out.String() }

// Signal sends sig to the process.
func (s *Shoal) Signal(sig os.Signal) { s.cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (s *Shoal) Done() <-chan struct{} { return s.done }

// ExitCode is the exit code once Done is closed.
func (s *Shoal) ExitCode() int { return s.cmd.ProcessState.ExitCode() }

// Stop sends SIGTERM and waits up to grace before killing the process.
func (s *Shoal) Stop(grace time.Duration) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(grace):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Get sends a GET through the proxy and returns the status and body.
func Get(client *http.Client, url string, hdr ...string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Spread sends n GETs and counts the bodies (the backends' hostnames).
func Spread(t testing.TB, url string, n int, hdr ...string) map[string]int {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	got := map[string]int{}
	for i := 0; i < n; i++ {
		code, body, err := Get(c, url, hdr...)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		if code != 200 {
			t.Fatalf("GET %s: status %d: %s", url, code, body)
		}
		got[body]++
	}
	return got
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
