package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/shoal-lb/shoal/proxy"
)

// statusMain is `shoal status`: it prints the pools and backends of a
// running Shoal from its admin API. Exit codes: 0 ok, 1 the admin API could
// not be read, 2 bad flags.
func statusMain(args []string, stdout io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runStatus(ctx, args, stdout, os.Stderr, os.Getenv)
}

type statusOptions struct {
	admin    string
	token    string
	json     bool
	watch    bool
	interval time.Duration
	timeout  time.Duration
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	o := statusOptions{}
	fs := flag.NewFlagSet("shoal status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: shoal status [flags]\n\nPrints the pools and backends of a running Shoal, read from its admin API.\n\nFlags:")
		fs.PrintDefaults()
	}
	adminDefault := getenv("SHOAL_ADMIN")
	if adminDefault == "" {
		adminDefault = "127.0.0.1:9180"
	}
	fs.StringVar(&o.admin, "admin", adminDefault, "address of Shoal's admin API, host:port or a URL (env SHOAL_ADMIN)")
	fs.StringVar(&o.token, "admin-token", getenv("SHOAL_ADMIN_TOKEN"), "the admin API's bearer token, when Shoal has one (env SHOAL_ADMIN_TOKEN)")
	fs.BoolVar(&o.json, "json", false, "print the admin API's JSON as it is")
	fs.BoolVar(&o.watch, "watch", false, "refresh until interrupted")
	fs.DurationVar(&o.interval, "interval", time.Second, "refresh period of --watch")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long to wait for the admin API")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "shoal status: unexpected argument %q; see shoal status -h\n", fs.Arg(0))
		return 2
	}
	if o.interval <= 0 {
		fmt.Fprintf(stderr, "shoal status: --interval=%s: expected a positive duration such as 1s\n", o.interval)
		return 2
	}
	base, err := adminURL(o.admin)
	if err != nil {
		fmt.Fprintln(stderr, "shoal status:", err)
		return 2
	}
	client := &http.Client{Timeout: o.timeout}

	once := func(stdout io.Writer) error {
		body, err := fetchStatus(ctx, client, base, o.token)
		if err != nil {
			return err
		}
		if o.json {
			_, err = stdout.Write(body)
			return err
		}
		var rep proxy.StatusReport
		if err := json.Unmarshal(body, &rep); err != nil {
			return fmt.Errorf("the admin API at %s answered something that is not a status report: %v", base, err)
		}
		return printStatus(stdout, &rep)
	}
	if !o.watch {
		if err := once(stdout); err != nil {
			fmt.Fprintln(stderr, "shoal status:", err)
			return 1
		}
		return 0
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		// Read first and draw the whole screen at once, so that it does not
		// flash blank while the admin API answers.
		var screen bytes.Buffer
		err := once(&screen)
		if ctx.Err() != nil {
			return 0
		}
		if !o.json {
			fmt.Fprintf(stdout, "\x1b[H\x1b[2J%s  %s  every %s, Ctrl-C stops\n\n", base, time.Now().Format("15:04:05"), o.interval)
		}
		if err != nil {
			fmt.Fprintln(&screen, "shoal status:", err) // on screen, and keep trying
		}
		stdout.Write(screen.Bytes())
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
	}
}

// adminURL turns --admin into a base URL: host:port gets http://, and a
// listen address without a host (":9180", "0.0.0.0:9180") means this machine.
func adminURL(admin string) (string, error) {
	admin = strings.TrimRight(strings.TrimSpace(admin), "/")
	if strings.Contains(admin, "://") {
		return admin, nil
	}
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "", fmt.Errorf("--admin=%q: expected host:port, e.g. 127.0.0.1:9180, or a URL", admin)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

func fetchStatus(ctx context.Context, client *http.Client, base, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/pools", nil)
	if err != nil {
		return nil, fmt.Errorf("--admin: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the admin API at %s (%v); is shoal running, and is --admin (SHOAL_ADMIN) its admin address?", base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the admin API's answer from %s: %v", base, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		what := "needs a token: pass --admin-token or set SHOAL_ADMIN_TOKEN"
		if token != "" {
			what = "refused the token given by --admin-token / SHOAL_ADMIN_TOKEN"
		}
		return nil, fmt.Errorf("the admin API at %s %s (401%s)", base, what, serverMessage(body))
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the admin API at %s answered %s%s", base, resp.Status, serverMessage(body))
	}
	return body, nil
}

// serverMessage is the "error" of a JSON error body, as ": msg".
func serverMessage(body []byte) string {
	var e struct{ Error string }
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return ": " + e.Error
	}
	return ""
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) && ue.Unwrap() != nil {
		return ue.Unwrap()
	}
	return err
}

func printStatus(w io.Writer, rep *proxy.StatusReport) error {
	if len(rep.Pools) == 0 {
		_, err := fmt.Fprintln(w, "no pools: label a container shoal.enable=true, or give shoal a --config file")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tMETHOD\tBACKEND\tADDRESS\tSTATE\tWEIGHT\tIN-FLIGHT\tREQUESTS\tFAILURES\tLATENCY")
	for _, p := range rep.Pools {
		if len(p.Backends) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\n", p.Name, p.Method)
			continue
		}
		for _, b := range p.Backends {
			weight := strconv.Itoa(b.Weight)
			if b.EffectiveWeight != float64(b.Weight) {
				weight = strconv.FormatFloat(b.EffectiveWeight, 'f', 1, 64) + "/" + weight
			}
			state := b.State
			if b.Backup && state != "backup" {
				state += " (backup)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n",
				p.Name, p.Method, b.Name, b.Address, state, weight, b.InFlight, b.Requests, b.Failures, latency(b.LatencyMS))
		}
	}
	return tw.Flush()
}

func latency(ms float64) string {
	switch {
	case ms <= 0:
		return "-"
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(ms/1000, 'f', 2, 64) + "s"
}
