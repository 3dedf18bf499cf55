package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestConfigs(t *testing.T) {
	be := []string{"127.0.0.1:9001", "127.0.0.1:9002"}
	ngx := nginxConfig("/tmp/x", "127.0.0.1:8080", be, 2)
	for _, want := range []string{
		"worker_processes 2;", "access_log off;", "keepalive 64;", "proxy_http_version 1.1;",
		`proxy_set_header Connection "";`, "server 127.0.0.1:9002;", "listen 127.0.0.1:8080;", "pid /tmp/x/nginx.pid;",
	} {
		if !strings.Contains(ngx, want) {
			t.Errorf("nginx config lacks %q:\n%s", want, ngx)
		}
	}
	hap := haproxyConfig("127.0.0.1:8080", be, 2)
	for _, want := range []string{"nbthread 2", "http-reuse always", "option http-keep-alive", "balance roundrobin", "server s2 127.0.0.1:9002", "bind 127.0.0.1:8080"} {
		if !strings.Contains(hap, want) {
			t.Errorf("haproxy config lacks %q:\n%s", want, hap)
		}
	}
	if strings.Contains(hap, "\n    log ") {
		t.Errorf("haproxy config logs:\n%s", hap)
	}
	want := "pools:\n  api:\n    servers:\n      - address: 127.0.0.1:9001\n      - address: 127.0.0.1:9002\n"
	if got := shoalConfig(be); got != want {
		t.Errorf("shoal config = %q, want %q", got, want)
	}
}

func TestFormatting(t *testing.T) {
	for _, tt := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999.5, "1,000"}, {41234.4, "41,234"}, {1234567, "1,234,567"}, {-1234, "-1,234"}, {math.NaN(), "—"}} {
		if got := fmtThousands(tt.in); got != tt.want {
			t.Errorf("fmtThousands(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := withRatio("10", 10, 8); got != "10 (1.25×)" {
		t.Errorf("withRatio = %q", got)
	}
	if got := withRatio("10", 10, math.NaN()); got != "10" {
		t.Errorf("withRatio without a reference = %q", got)
	}
}

func TestSplitSoak(t *testing.T) {
	doc := "# Benchmarks\n\nmatrix\n\n" + soakMarker + "\n## Soak\n\nfigures\n"
	main, soak := splitSoak(doc)
	if main != "# Benchmarks\n\nmatrix\n\n" || !strings.HasPrefix(soak, soakMarker) {
		t.Errorf("splitSoak = %q, %q", main, soak)
	}
	if main, soak := splitSoak("# only\n"); main != "# only\n" || soak != "" {
		t.Errorf("splitSoak without a soak = %q, %q", main, soak)
	}
}

func TestReportRatiosToNginx(t *testing.T) {
	cases := benchCases([]int{50})
	res := make(results)
	nan := math.NaN()
	for _, c := range cases {
		for _, rps := range []float64{100, 120, 110} {
			res.add(c, nameNginx, sample{RPS: rps, P50: 1, P99: 2, CPU10k: 0.5, RSSMiB: 10, Requests: 1000})
		}
		for _, rps := range []float64{200, 220, 240} {
			res.add(c, nameShoal, sample{RPS: rps, P50: 0.5, P99: 1, CPU10k: 0.25, RSSMiB: 20, Requests: 2000})
			res.add(c, nameDirect, sample{RPS: rps * 2, P50: 0.5, P99: 1, CPU10k: nan, RSSMiB: nan, Requests: 4000})
		}
	}
	r := &report{Rounds: 3, Threads: 2, Workers: 2, Cases: cases, Res: res,
		Targets: []*target{{Name: nameShoal, Proc: &proc{}}, {Name: nameNginx, Proc: &proc{}}, {Name: nameDirect}}}
	h := r.headline()
	for _, want := range []string{"| Shoal | 220 (2.00×) |", "| NGINX | 110 (1.00×) |", "0.250 (0.50×)", "20.0 MiB (2.00×)", "| direct | 440 (4.00×) |"} {
		if !strings.Contains(h, want) {
			t.Errorf("headline lacks %q:\n%s", want, h)
		}
	}
	doc := r.document(soakMarker + "\n## Soak\n")
	for _, want := range []string{"## Machine", "## Versions", "## Commands", "### 13 B body, 50 connections", "### 16 KiB body, 50 connections", "0 of 6,000"} {
		if !strings.Contains(doc, want) {
			t.Errorf("document lacks %q", want)
		}
	}
	if !strings.HasSuffix(doc, soakMarker+"\n## Soak\n") {
		t.Error("document dropped the soak section")
	}
}

func TestBusy(t *testing.T) {
	for _, tt := range []struct {
		load string
		want bool
	}{{"0.50 0.40 0.30", false}, {"2.00 1 1", false}, {"11.47 7.96 3.73", true}, {"", false}} {
		if got := busy(tt.load, 2); got != tt.want {
			t.Errorf("busy(%q, 2) = %v, want %v", tt.load, got, tt.want)
		}
	}
}

func TestSoakSection(t *testing.T) {
	sr := soakReport{Duration: 10 * time.Minute, Warmup: time.Minute, Interval: 10 * time.Second, Conns: 256, Source: fromThreads,
		TmpDir: "/tmp/shoalbench-1", ShoalCmd: "bin/shoal --config /tmp/shoalbench-1/shoal.yaml",
		Wrk: wrkResult{RPS: 1000, Requests: 600000, P50: time.Millisecond, P99: 5 * time.Millisecond}, CPU: 60 * time.Second}
	for i := 1; i <= 60; i++ {
		sr.Points = append(sr.Points, soakPoint{At: time.Duration(i) * 10 * time.Second, RSSMiB: 30, Goroutines: 12})
	}
	sec := sr.section()
	for _, want := range []string{soakMarker, "## Soak", "OS threads", "| 1,000 |", "| 1.000 |", "+0.0 MiB (+0.0%)", "$DIR/shoal.yaml"} {
		if !strings.Contains(sec, want) {
			t.Errorf("soak section lacks %q:\n%s", want, sec)
		}
	}
	if strings.Contains(sec, "/tmp/shoalbench-1") {
		t.Error("soak section shows the temp dir instead of $DIR")
	}
}
