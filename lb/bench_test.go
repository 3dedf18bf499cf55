package lb

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// method is one way to configure a pool's selection, for the benchmarks and
// the tests that run over every method.
type method struct {
	desc   string
	method string
	opts   []func(*Settings)
}

var benchMethods = []method{
	{desc: "round_robin", method: MethodRoundRobin},
	{desc: "least_conn", method: MethodLeastConn},
	{desc: "ip_hash", method: MethodIPHash},
	{desc: "hash", method: MethodHash},
	{desc: "hash_bounded", method: MethodHash, opts: []func(*Settings){func(s *Settings) { s.BalanceFactor = 1.25 }}},
	{desc: "hash_modulo", method: MethodHash, opts: []func(*Settings){func(s *Settings) { s.HashConsistent = false }}},
	{desc: "least_time", method: MethodLeastTime},
	{desc: "random", method: MethodRandom},
	{desc: "random_d1", method: MethodRandom, opts: []func(*Settings){func(s *Settings) { s.RandomChoices = 1 }}},
}

// benchGroup is a group of n backends with weights 1 to 4 and a spread of
// in-flight counts (1 to 5, none idle, so that least_conn scans them all)
// and latencies, as a busy pool would have.
func benchGroup(tb testing.TB, m method, n int) *Group {
	tb.Helper()
	w := make([]int, n)
	for i := range w {
		w[i] = i%4 + 1
	}
	g := readyGroup(tb, m.method, w, m.opts...)
	for i, b := range g.Backends {
		b.Acquire()
		b.Release(time.Duration(1+i%7) * time.Millisecond)
		for range 1 + i%5 {
			b.Acquire()
		}
	}
	return g
}

// benchKeys returns 1024 keys: /24 prefixes for ip_hash, paths otherwise.
func benchKeys(m method) [][]byte {
	keys := make([][]byte, 1024)
	for i := range keys {
		if m.method == MethodIPHash {
			var k [4]byte
			binary.BigEndian.PutUint32(k[:], uint32(i)*2654435761)
			keys[i] = k[:3]
		} else {
			keys[i] = []byte("/api/users/" + strconv.Itoa(i*7919))
		}
	}
	return keys
}

func BenchmarkSelect(b *testing.B) {
	for _, m := range benchMethods {
		for _, n := range []int{3, 100, 1000} {
			now := time.Now().UnixNano()
			keys := benchKeys(m)
			b.Run(fmt.Sprintf("%s/n=%d/serial", m.desc, n), func(b *testing.B) {
				g := benchGroup(b, m, n)
				b.ReportAllocs()
				r := &Request{Now: now}
				i := 0
				for b.Loop() {
					r.Key = keys[i&1023]
					i++
					if g.Select(r) == nil {
						b.Fatal("nil pick")
					}
				}
			})
			b.Run(fmt.Sprintf("%s/n=%d/parallel", m.desc, n), func(b *testing.B) {
				g := benchGroup(b, m, n)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					r := &Request{Now: now}
					i := 0
					for pb.Next() {
						r.Key = keys[i&1023]
						i++
						if g.Select(r) == nil {
							b.Error("nil pick")
							return
						}
					}
				})
			})
		}
	}
}

func TestSelectDoesNotAllocate(t *testing.T) {
	for _, m := range benchMethods {
		g := benchGroup(t, m, 100)
		keys := benchKeys(m)
		r := &Request{Now: time.Now().UnixNano()}
		i := 0
		allocs := testing.AllocsPerRun(1000, func() {
			r.Key = keys[i&1023]
			i++
			g.Select(r)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Select, want 0", m.desc, allocs)
		}
	}
}
