package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// supervisor owns every long-lived process the harness starts (backends,
// proxies). Each runs in its own process group, so that a Ctrl-C on the
// terminal reaches only the harness, which then stops them in order; and
// with a parent-death signal, so that they also go if the harness is killed
// outright. Nothing else is ever signalled.
type supervisor struct {
	mu    sync.Mutex
	procs []*proc
}

// proc is one started process. done is closed when it has exited; err is
// then its wait error.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *tailBuffer
}

func (p *proc) PID() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// start runs name argv with env added to the harness's environment. Its
// stdout and stderr go to a small in-memory tail, shown if it fails.
func (s *supervisor) start(name string, env []string, argv ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	tail := &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = tail, tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: tail}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// stop ends p: SIGTERM to its process group (nginx's workers are in it),
// SIGKILL to the group after a grace period. The group is signalled only
// while its leader, our child, is still unreaped, so the id cannot have been
// reused by someone else's process.
func (s *supervisor) stop(p *proc) {
	if ok, _ := p.exited(); ok {
		return
	}
	pgid := p.PID() // Setpgid made the group id equal to the pid we started
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// stopAll stops everything started, newest first (proxies before backends).
func (s *supervisor) stopAll() {
	s.mu.Lock()
	ps := s.procs
	s.procs = nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(ps) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			s.stop(p)
		}(ps[i])
	}
	wg.Wait()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

var _ io.Writer = (*tailBuffer)(nil)

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
