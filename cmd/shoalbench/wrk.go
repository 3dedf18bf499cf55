package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reports. Latencies are wrk's own
// (coordinated-omission-naive) percentiles from --latency.
type wrkResult struct {
	Requests    int64         // completed requests ("N requests in ...")
	Elapsed     time.Duration // wall time wrk measured over
	RPS         float64       // "Requests/sec:"
	P50, P99    time.Duration // from the "Latency Distribution" block
	Non2xx      int64         // "Non-2xx or 3xx responses:"
	SocketErrs  int64         // connect+read+write+timeout
	SocketError string        // the raw "Socket errors:" line, for the report
}

// Errors is every request that did not end in a 2xx/3xx answer.
func (r wrkResult) Errors() int64 { return r.Non2xx + r.SocketErrs }

// parseWrk reads the text wrk 4.x prints with --latency. It needs at least the
// request count, Requests/sec and the 50% and 99% lines; anything else is
// optional, so that a wrk that prints extra lines still parses.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveReq, haveRPS, have50, have99 bool
	inDist := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case line == "Latency Distribution":
			inDist = true
		case inDist && len(f) == 2 && strings.HasSuffix(f[0], "%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk latency line %q: %w", line, err)
			}
			switch f[0] {
			case "50%", "50.000%":
				r.P50, have50 = d, true
			case "99%", "99.000%":
				r.P99, have99 = d, true
			}
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			inDist = false
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk request count in %q: %w", line, err)
			}
			d, err := parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, fmt.Errorf("wrk elapsed time in %q: %w", line, err)
			}
			r.Requests, r.Elapsed, haveReq = n, d, true
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk Requests/sec in %q: %w", line, err)
			}
			r.RPS, haveRPS = v, true
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			n, err := strconv.ParseInt(f[4], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk non-2xx count in %q: %w", line, err)
			}
			r.Non2xx = n
		case strings.HasPrefix(line, "Socket errors:"):
			// Socket errors: connect 0, read 12, write 0, timeout 3
			r.SocketError = line
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if err != nil {
					return r, fmt.Errorf("wrk socket errors in %q: %w", line, err)
				}
				r.SocketErrs += n
			}
		default:
			if inDist && len(f) > 0 && !strings.HasSuffix(f[0], "%") {
				inDist = false
			}
		}
	}
	var missing []string
	if !haveReq {
		missing = append(missing, `"N requests in T"`)
	}
	if !haveRPS {
		missing = append(missing, `"Requests/sec:"`)
	}
	if !have50 || !have99 {
		missing = append(missing, "the 50%/99% latency lines (was --latency given?)")
	}
	if len(missing) > 0 {
		return r, fmt.Errorf("wrk output lacks %s", strings.Join(missing, ", "))
	}
	return r, nil
}

// parseWrkDuration reads wrk's time units: "812.00us", "1.23ms", "2.00s",
// "1.50m", "1.00h".
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		d      time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("duration %q: want a number followed by us, ms, s, m or h", s)
			}
			return time.Duration(v * float64(u.d)), nil
		}
	}
	return 0, fmt.Errorf("duration %q: want a number followed by us, ms, s, m or h", s)
}

// wrkArgs are the arguments of one wrk run; kept in one place so that the
// report can print exactly what ran.
func wrkArgs(threads, conns int, d time.Duration, url string) []string {
	return []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns), "-d" + wrkSeconds(d), "--latency", url}
}

func wrkSeconds(d time.Duration) string {
	return strconv.Itoa(int((d+time.Second/2)/time.Second)) + "s"
}

// runWrk runs wrk to completion and parses what it printed.
func runWrk(ctx context.Context, args []string) (wrkResult, string, error) {
	cmd := exec.CommandContext(ctx, "wrk", args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, string(out), fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	r, err := parseWrk(string(out))
	return r, string(out), err
}
