// Package harness holds what Shoal's end-to-end tests share: real Docker
// containers and networks labelled for cleanup, the test backend image, a
// Shoal process, and a bounded load generator. Everything it starts carries
// the label shoaltest.run=<run id> and is removed in t.Cleanup, also after a
// failed test.
package harness

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// RunLabel is the label every container and network of this test process
// carries, with RunID as its value.
const RunLabel = "shoaltest.run"

// RunID identifies this test process's Docker objects.
var RunID = randomHex(6)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// RequireDocker fails the test when no Docker engine answers. It never
// skips: the end-to-end tests are the point of the suite.
func RequireDocker(t testing.TB) {
	t.Helper()
	out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	if err != nil {
		t.Fatalf("a Docker engine is required for this test (docker info: %v: %s)", err, bytes.TrimSpace(out))
	}
}

// Docker runs the docker CLI and returns its trimmed stdout; it fails the
// test on error.
func Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := DockerErr(args...)
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// DockerErr runs the docker CLI and returns its trimmed stdout, or an error
// that includes stderr.
func DockerErr(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

var (
	imageOnce sync.Once
	imageErr  error
)

// BackendImage is the tag of the test backend image: testdata/backend built
// statically and copied FROM scratch. It is built once per test process.
const BackendImage = "shoal-test-backend:latest"

// BuildBackendImage builds BackendImage once per process.
func BuildBackendImage(t testing.TB) string {
	t.Helper()
	RequireDocker(t)
	imageOnce.Do(func() {
		imageErr = buildImage(BackendImage, "FROM scratch\nCOPY backend /backend\nEXPOSE 8000\nENTRYPOINT [\"/backend\"]\n", func(dir string) error {
			build := exec.Command("go", "build", "-o", filepath.Join(dir, "backend"), "./testdata/backend")
			build.Dir = RepoRoot()
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				return fmt.Errorf("building the test backend: %v: %s", err, out)
			}
			return nil
		})
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return BackendImage
}

// buildImage builds tag from a Dockerfile in a temporary directory that
// setup, if given, fills with what the Dockerfile copies.
func buildImage(tag, dockerfile string, setup func(dir string) error) error {
	dir, err := os.MkdirTemp("", "shoal-image")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if setup != nil {
		if err := setup(dir); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	_, err = DockerErr("build", "-q", "--label", "shoaltest=backend", "-t", tag, dir)
	return err
}

// NewNetwork creates a bridge network for the test and removes it, and every
// container of this run on it, in cleanup. It returns the network's name.
func NewNetwork(t testing.TB) string {
	t.Helper()
	RequireDocker(t)
	name := "shoaltest_" + randomHex(4)
	Docker(t, "network", "create", "--driver", "bridge", "--label", RunLabel+"="+RunID, name)
	t.Cleanup(func() {
		RemoveContainers(t, name)
		DockerErr("network", "rm", name)
	})
	return name
}

// RemoveContainers force-removes this run's containers; with network set,
// only those attached to it.
func RemoveContainers(t testing.TB, network string) {
	args := []string{"ps", "-aq", "--filter", "label=" + RunLabel + "=" + RunID}
	if network != "" {
		args = append(args, "--filter", "network="+network)
	}
	ids, err := DockerErr(args...)
	if err != nil || ids == "" {
		return
	}
	DockerErr(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
}

// Container describes a test container to run.
type Container struct {
	Name    string            // optional
	Image   string            // default BackendImage
	Network string            // required
	Labels  map[string]string // besides the run label
	Env     []string
	Args    []string // arguments to the image's entrypoint
	Extra   []string // more `docker run` flags
}

// Run starts c detached and returns its ID. It is removed in cleanup.
func Run(t testing.TB, c Container) string {
	t.Helper()
	if c.Image == "" {
		c.Image = BuildBackendImage(t)
	}
	args := []string{"run", "-d", "--label", RunLabel + "=" + RunID, "--network", c.Network}
	if c.Name != "" {
		args = append(args, "--name", c.Name)
	}
	for k, v := range c.Labels {
		args = append(args, "--label", k+"="+v)
	}
	for _, e := range c.Env {
		args = append(args, "-e", e)
	}
	args = append(args, c.Extra...)
	args = append(args, c.Image)
	args = append(args, c.Args...)
	id := Docker(t, args...)
	t.Cleanup(func() { DockerErr("rm", "-f", "-v", id) })
	return id
}

// Hostname is the container's hostname, which the test backend answers with.
func Hostname(t testing.TB, id string) string {
	t.Helper()
	return Docker(t, "inspect", "-f", "{{.Config.Hostname}}", id)
}

// IP is the container's address on network.
func IP(t testing.TB, id, network string) string {
	t.Helper()
	return Docker(t, "inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", network), id)
}

// Eventually polls cond every 20ms until it holds or timeout passes, and then
// fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
