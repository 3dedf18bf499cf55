package main

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"time"
)

// The two response bodies of the benchmark. Every backend answers the same
// bytes, so that a target's rotation does not change what is measured.
var (
	smallBody = []byte("Hello, world\n")                // 13 bytes
	largeBody = bytes.Repeat([]byte("shoal!!\n"), 2048) // 16 KiB
)

const (
	smallPath = "/"
	largePath = "/size?n=16384" // the same path testdata/backend answers
)

// serveBackend is the hidden -serve-backend mode: a minimal net/http server
// with its bodies prebuilt, so that the backends cost as little CPU as a Go
// server can and the proxies are what differs.
func serveBackend(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	smallLen := strconv.Itoa(len(smallBody))
	largeLen := strconv.Itoa(len(largeBody))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, n := smallBody, smallLen
		if r.URL.Path == "/size" {
			body, n = largeBody, largeLen
		}
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain"}
		hd["Content-Length"] = []string{n}
		w.Write(body)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	return srv.Serve(ln)
}
