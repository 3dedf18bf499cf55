package main

import (
	"strings"
	"testing"
	"time"
)

// wrkOK is what wrk 4.1.0 printed for a run against the 16 KiB backend.
const wrkOK = `Running 1s test @ http://127.0.0.1:18999/size?n=16384
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   814.86us    1.10ms  22.29ms   92.58%
    Req/Sec     7.22k     1.55k    9.53k    60.00%
  Latency Distribution
     50%  509.00us
     75%    0.90ms
     90%    1.57ms
     99%    5.40ms
  14344 requests in 1.00s, 225.56MB read
Requests/sec:  14308.06
Transfer/sec:    225.00MB
`

// wrkErrs is a run where the target failed some requests.
const wrkErrs = `Running 10s test @ http://127.0.0.1:8080/
  2 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.10ms   20.31ms   1.99s    98.10%
    Req/Sec    10.01k     1.20k   12.00k    70.00%
  Latency Distribution
     50%    8.00ms
     75%   10.00ms
     90%   14.00ms
     99%    1.20s
  200000 requests in 10.01s, 30.00MB read
  Socket errors: connect 0, read 12, write 3, timeout 40
  Non-2xx or 3xx responses: 17
Requests/sec:  19980.02
Transfer/sec:      3.00MB
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want wrkResult
	}{
		{
			desc: "clean run",
			in:   wrkOK,
			want: wrkResult{Requests: 14344, Elapsed: time.Second, RPS: 14308.06, P50: 509 * time.Microsecond, P99: 5400 * time.Microsecond},
		},
		{
			desc: "socket errors and non-2xx, second-scale p99",
			in:   wrkErrs,
			want: wrkResult{Requests: 200000, Elapsed: 10010 * time.Millisecond, RPS: 19980.02, P50: 8 * time.Millisecond, P99: 1200 * time.Millisecond, Non2xx: 17, SocketErrs: 55},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := parseWrk(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got.SocketError = ""
			if got != tt.want {
				t.Errorf("parseWrk:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if got, _ := parseWrk(wrkErrs); got.Errors() != 72 {
		t.Errorf("Errors() = %d, want 72 (17 non-2xx + 55 socket)", got.Errors())
	}
}

func TestParseWrkRejects(t *testing.T) {
	tests := []struct {
		desc, in, wantErr string
	}{
		{desc: "no --latency", in: strings.Replace(wrkOK, "     99%    5.40ms\n", "", 1), wantErr: "--latency"},
		{desc: "connection refused", in: "unable to connect to 127.0.0.1:1 Connection refused\n", wantErr: "requests in"},
		{desc: "bad unit", in: strings.Replace(wrkOK, "509.00us", "509.00ns", 1), wantErr: "us, ms, s"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := parseWrk(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseWrk error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseWrkDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"812.00us", 812 * time.Microsecond},
		{"1.23ms", 1230 * time.Microsecond},
		{"2.00s", 2 * time.Second},
		{"1.50m", 90 * time.Second},
		{"1.00h", time.Hour},
	}
	for _, tt := range tests {
		got, err := parseWrkDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "ms", "-1ms", "1.2"} {
		if _, err := parseWrkDuration(bad); err == nil {
			t.Errorf("parseWrkDuration(%q) succeeded, want an error", bad)
		}
	}
}

func TestWrkArgs(t *testing.T) {
	got := strings.Join(wrkArgs(2, 256, 10*time.Second, "http://127.0.0.1:1/"), " ")
	if want := "-t2 -c256 -d10s --latency http://127.0.0.1:1/"; got != want {
		t.Errorf("wrkArgs = %q, want %q", got, want)
	}
}
