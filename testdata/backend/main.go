// Command backend is the tiny HTTP server that Shoal's tests and benchmarks
// run behind the proxy. It answers with its hostname so that rotation can be
// seen, and has endpoints for the protocol and fault tests.
//
//	GET  /                 the hostname (or $NAME), as text
//	GET  /slow?ms=N        the same after N milliseconds
//	GET  /size?n=N         N bytes of body
//	POST /echo             the request body, streamed back
//	GET  /headers          the request headers as JSON, and the Host
//	GET  /ws               a WebSocket echo
//	GET  /sse?n=N&ms=M     N server-sent events, M milliseconds apart
//	GET  /health           200, or 503 after /admin/health?ok=0
//	GET  /admin/health?ok=0|1   turns /health (and -check) failing or passing
//	GET  /admin/latency?ms=N    adds N milliseconds to every / request
//
// With -check URL it is a Docker HEALTHCHECK command instead: it exits 0 when
// URL answers 2xx and 1 otherwise.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	listen := flag.String("listen", envOr("LISTEN", ":8000"), "address to listen on")
	delay := flag.Duration("delay-start", durEnv("DELAY_START"), "wait this long before listening")
	check := flag.String("check", "", "run as a health check against this URL and exit")
	flag.Parse()

	if *check != "" {
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(*check)
		if err != nil || resp.StatusCode/100 != 2 {
			os.Exit(1)
		}
		os.Exit(0)
	}

	name := os.Getenv("NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	s := &server{name: name}
	s.healthy.Store(true)
	if os.Getenv("UNHEALTHY") == "1" {
		s.healthy.Store(false)
	}

	time.Sleep(*delay)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: s.mux(), ReadHeaderTimeout: 10 * time.Second}
	// As PID 1 in a container, SIGTERM is ignored unless handled: stop
	// gracefully like a real app, finishing in-flight requests.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	stopped := make(chan struct{})
	go func() {
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(stopped)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	<-stopped
}

type server struct {
	name    string
	healthy atomic.Bool
	latency atomic.Int64 // ms added to /
}

func (s *server) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if ms := s.latency.Load(); ms > 0 {
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		io.WriteString(w, s.name)
	})
	m.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		io.WriteString(w, s.name)
	})
	m.HandleFunc("/size", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		buf := make([]byte, 32<<10)
		for i := range buf {
			buf[i] = 'a' + byte(i%26)
		}
		for n > 0 {
			k := min(n, len(buf))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	m.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", s.name)
		// Stream the body back as it arrives, which needs full duplex in
		// net/http's HTTP/1 server.
		http.NewResponseController(w).EnableFullDuplex()
		io.Copy(w, r.Body)
	})
	m.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		h := map[string]any{"host": r.Host, "headers": r.Header, "backend": s.name, "remote": r.RemoteAddr}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h)
	})
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	m.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			t, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(t, msg); err != nil {
				return
			}
		}
	})
	m.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		f, _ := w.(http.Flusher)
		for i := 0; i < n; i++ {
			if i > 0 {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(time.Duration(ms) * time.Millisecond):
				}
			}
			fmt.Fprintf(w, "id: %d\ndata: %s %d\n\n", i, s.name, i)
			if f != nil {
				f.Flush()
			}
		}
	})
	m.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if !s.healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	m.HandleFunc("/admin/health", func(w http.ResponseWriter, r *http.Request) {
		s.healthy.Store(r.URL.Query().Get("ok") != "0")
		io.WriteString(w, "ok")
	})
	m.HandleFunc("/admin/latency", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		s.latency.Store(int64(ms))
		io.WriteString(w, "ok")
	})
	return m
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func durEnv(k string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(k))
	return d
}
