package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Load describes bounded traffic: Clients concurrent clients for Duration,
// and never more than MaxRequests in all.
type Load struct {
	URL         string
	Clients     int           // default 32
	Duration    time.Duration // default 10s
	MaxRequests int           // default 1,000,000
	// PostEvery makes every n-th request of a client a POST with a small
	// body to PostPath; 0 sends only GETs.
	PostEvery int
	PostPath  string // default "/echo"
	Host      string // Host header, optional
	// Timeout bounds one request; default 10s.
	Timeout time.Duration
}

// Result counts every request of a load run.
type Result struct {
	Sent, OK   int
	GetFailed  int
	PostSent   int
	PostFailed int
	Failures   map[string]int // by kind: "status 502", "EOF", ...
	P50, P99   time.Duration
	ByBody     map[string]int // successful GET bodies (backend hostnames)
}

// Failed is the number of failed requests of any method.
func (r *Result) Failed() int { return r.GetFailed + r.PostFailed }

func (r *Result) String() string {
	kinds := make([]string, 0, len(r.Failures))
	for k, n := range r.Failures {
		kinds = append(kinds, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("sent=%d ok=%d failed=%d (GET %d, POST %d of %d) p50=%v p99=%v failures=[%s]",
		r.Sent, r.OK, r.Failed(), r.GetFailed, r.PostFailed, r.PostSent, r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), strings.Join(kinds, " "))
}

// Run sends the load and returns when Duration has passed, MaxRequests were
// sent, or ctx ends.
func (l Load) Run(ctx context.Context) *Result {
	if l.Clients <= 0 {
		l.Clients = 32
	}
	if l.Duration <= 0 {
		l.Duration = 10 * time.Second
	}
	if l.MaxRequests <= 0 {
		l.MaxRequests = 1000000
	}
	if l.PostPath == "" {
		l.PostPath = "/echo"
	}
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: l.Clients, MaxConnsPerHost: l.Clients}
	defer tr.CloseIdleConnections()
	if l.Timeout <= 0 {
		l.Timeout = 10 * time.Second
	}
	client := &http.Client{Transport: tr, Timeout: l.Timeout}

	var mu sync.Mutex
	res := &Result{Failures: map[string]int{}, ByBody: map[string]int{}}
	var lat []time.Duration
	budget := make(chan struct{}, l.MaxRequests)
	for i := 0; i < l.MaxRequests; i++ {
		budget <- struct{}{}
	}
	close(budget)

	var wg sync.WaitGroup
	for c := 0; c < l.Clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; ; n++ {
				if ctx.Err() != nil {
					return
				}
				if _, ok := <-budget; !ok {
					return
				}
				post := l.PostEvery > 0 && n%l.PostEvery == 0
				start := time.Now()
				body, err := l.one(client, post)
				d := time.Since(start)
				if err != nil && ctx.Err() != nil && strings.Contains(err.Error(), "context") {
					return // the run ended mid-request: not a failure of the proxy
				}
				mu.Lock()
				res.Sent++
				if post {
					res.PostSent++
				}
				if err != nil {
					res.Failures[err.Error()]++
					if post {
						res.PostFailed++
					} else {
						res.GetFailed++
					}
				} else {
					res.OK++
					lat = append(lat, d)
					if !post {
						res.ByBody[body]++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		res.P50 = lat[len(lat)*50/100]
		res.P99 = lat[len(lat)*99/100]
	}
	return res
}

func (l Load) one(client *http.Client, post bool) (string, error) {
	var req *http.Request
	var err error
	if post {
		req, err = http.NewRequest(http.MethodPost, strings.TrimSuffix(l.URL, "/")+l.PostPath, bytes.NewReader([]byte("payload-0123456789")))
	} else {
		req, err = http.NewRequest(http.MethodGet, l.URL, nil)
	}
	if err != nil {
		return "", err
	}
	if l.Host != "" {
		req.Host = l.Host
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", errKind(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", errKind(err)
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	if post && string(b) != "payload-0123456789" {
		return "", fmt.Errorf("bad echo")
	}
	return string(b), nil
}

// errKind shortens a client error to its kind, so that failures group.
func errKind(err error) error {
	s := err.Error()
	for _, k := range []string{"connection refused", "connection reset", "EOF", "timeout", "context deadline exceeded", "context canceled"} {
		if strings.Contains(s, k) {
			return fmt.Errorf("%s", k)
		}
	}
	return err
}
