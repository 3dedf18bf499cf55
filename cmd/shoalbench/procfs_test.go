package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		desc string
		line string
		want procStat
	}{
		{
			desc: "nginx worker",
			line: "4242 (nginx) S 4241 4241 4241 0 -1 4194624 120 0 0 0 250 75 3 2 20 0 1 0 1234 12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0",
			want: procStat{PID: 4242, PPID: 4241, Comm: "nginx", Ticks: 250 + 75 + 3 + 2},
		},
		{
			desc: "comm with spaces and a parenthesis",
			line: "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5 0 0",
			want: procStat{PID: 7, PPID: 1, Comm: "a) b (c)", Ticks: 30},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := parseStat(tt.line)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "12 nginx S 1", "12 (x) S 1 2 3"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tshoal\nVmPeak:\t  812340 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	for _, tt := range []struct {
		key  string
		want int64
	}{{"VmHWM", 40960}, {"VmRSS", 20480}} {
		if got, err := parseStatusKB(status, tt.key); err != nil || got != tt.want {
			t.Errorf("parseStatusKB(%s) = %d, %v; want %d", tt.key, got, err, tt.want)
		}
	}
	if got, err := parseStatusInt(status, "Threads"); err != nil || got != 9 {
		t.Errorf("parseStatusInt(Threads) = %d, %v; want 9", got, err)
	}
	if _, err := parseStatusKB(status, "VmSwap"); err == nil {
		t.Error("parseStatusKB(VmSwap) succeeded on a status without it")
	}
	if _, err := parseStatusKB(status, "Threads"); err == nil {
		t.Error("parseStatusKB(Threads) succeeded on a value without kB")
	}
}

func TestDescendants(t *testing.T) {
	stats := []procStat{
		{PID: 1, PPID: 0}, {PID: 10, PPID: 1}, // master
		{PID: 11, PPID: 10}, {PID: 12, PPID: 10}, // workers
		{PID: 13, PPID: 11}, // a worker's child
		{PID: 20, PPID: 1},  // someone else's
	}
	if got, want := descendants(10, stats), []int{10, 11, 12, 13}; !reflect.DeepEqual(got, want) {
		t.Errorf("descendants(10) = %v, want %v", got, want)
	}
	if got, want := descendants(99, stats), []int{99}; !reflect.DeepEqual(got, want) {
		t.Errorf("descendants(99) = %v, want %v", got, want)
	}
}

func TestTicks(t *testing.T) {
	if got := ticksToDuration(250); got != 2500*time.Millisecond {
		t.Errorf("ticksToDuration(250) = %v, want 2.5s", got)
	}
}

// TestOwnProcess reads this test's own /proc entries: no network, no
// other programs.
func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Fatalf("the harness reads /proc, which this machine lacks: %v", err)
	}
	pid := os.Getpid()
	if _, err := treeCPU(pid); err != nil {
		t.Errorf("treeCPU(self): %v", err)
	}
	if kb := treeRSS([]int{pid}); kb <= 0 {
		t.Errorf("treeRSS(self) = %d KiB, want > 0", kb)
	}
	if n, err := threads(pid); err != nil || n < 1 {
		t.Errorf("threads(self) = %d, %v", n, err)
	}
	if got := cpuModel("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"); !strings.Contains(got, "EPYC") {
		t.Errorf("cpuModel = %q", got)
	}
}
