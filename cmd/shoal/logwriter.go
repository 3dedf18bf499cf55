package main

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// syncWriter serialises writes from the logger and the access log buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// bufferedWriter collects whole log lines and writes them out every period,
// or when 64 KiB are pending. Close flushes what is left.
type bufferedWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	out  io.Writer
	stop chan struct{}
	done chan struct{}
}

func newBufferedWriter(out io.Writer, period time.Duration) *bufferedWriter {
	b := &bufferedWriter{out: out, stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop(period)
	return b
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if b.buf.Len() >= 64<<10 {
		b.flushLocked()
	}
	return len(p), nil
}

func (b *bufferedWriter) flushLocked() {
	if b.buf.Len() > 0 {
		b.out.Write(b.buf.Bytes())
		b.buf.Reset()
	}
}

func (b *bufferedWriter) loop(period time.Duration) {
	defer close(b.done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			b.mu.Lock()
			b.flushLocked()
			b.mu.Unlock()
			return
		case <-t.C:
			b.mu.Lock()
			b.flushLocked()
			b.mu.Unlock()
		}
	}
}

// Close flushes and stops the writer.
func (b *bufferedWriter) Close() {
	close(b.stop)
	<-b.done
}
