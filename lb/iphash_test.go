package lb

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// slash24 is the key the proxy passes for an IPv4 client: its first three
// octets.
func slash24(ip [4]byte) []byte { return ip[:3] }

func TestIPHashSameSlash24SameBackend(t *testing.T) {
	a := readyGroup(t, MethodIPHash, []int{1, 2, 3, 1, 1})
	b := readyGroup(t, MethodIPHash, []int{1, 2, 3, 1, 1}) // another process
	r := &Request{Now: time.Now().UnixNano()}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		net := [4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}
		r.Key = slash24(net)
		want := indexOf(a, a.Select(r))
		for host := range 256 {
			ip := net
			ip[3] = byte(host)
			r.Key = slash24(ip)
			if got := indexOf(a, a.Select(r)); got != want {
				t.Fatalf("%v: backend %d, but %d for another address of its /24", ip, got, want)
			}
			if got := indexOf(b, b.Select(r)); got != want {
				t.Fatalf("%v: backend %d in one group, %d in an identical one", ip, want, got)
			}
		}
	}
}

func TestIPHashSpreadsByWeight(t *testing.T) {
	tests := []struct {
		desc    string
		weights []int
		key     func(i int) []byte
	}{
		{"IPv4 /24s, equal weights", equalWeights(7), func(i int) []byte {
			var k [4]byte
			binary.BigEndian.PutUint32(k[:], uint32(i)<<8)
			return k[:3]
		}},
		{"IPv4 /24s, weights 1 2 3 4", []int{1, 2, 3, 4}, func(i int) []byte {
			var k [4]byte
			binary.BigEndian.PutUint32(k[:], uint32(i)<<8)
			return k[:3]
		}},
		{"IPv6 addresses in one /64", equalWeights(5), func(i int) []byte {
			k := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(k[12:], uint32(i))
			return k
		}},
	}
	const keys = 20000
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			g := readyGroup(t, MethodIPHash, tt.weights)
			r := &Request{Now: time.Now().UnixNano()}
			got := make([]int, len(tt.weights))
			for i := range keys {
				r.Key = tt.key(i)
				got[indexOf(g, g.Select(r))]++
			}
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			for i, w := range tt.weights {
				want := float64(keys*w) / float64(sum)
				if d := float64(got[i]) - want; d > 0.1*want || d < -0.1*want {
					t.Errorf("backend %d (weight %d): %d keys, want %.0f ± 10%% (%v)", i, w, got[i], want, got)
				}
			}
		})
	}
}

func TestIPHashUnusableBackend(t *testing.T) {
	a := readyGroup(t, MethodIPHash, equalWeights(5))
	b := readyGroup(t, MethodIPHash, equalWeights(5))
	r := &Request{Now: time.Now().UnixNano()}
	before := make([]int, 1000)
	for i := range before {
		r.Key = []byte{10, byte(i >> 8), byte(i)}
		before[i] = indexOf(a, a.Select(r))
	}
	a.Backends[2].SetManualDrain(true)
	b.Backends[2].SetManualDrain(true)
	moved := 0
	for i := range before {
		r.Key = []byte{10, byte(i >> 8), byte(i)}
		got := indexOf(a, a.Select(r))
		switch {
		case got == 2:
			t.Fatalf("key %d sent to the drained backend", i)
		case before[i] != 2 && got != before[i]:
			t.Fatalf("key %d moved from %d to %d though its backend is usable", i, before[i], got)
		case got != indexOf(b, b.Select(r)):
			t.Fatalf("key %d: the second choice differs between two identical groups", i)
		case before[i] == 2:
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no key was on the drained backend; the test proves nothing")
	}
}

func TestIPHashMissingKeyIsRoundRobin(t *testing.T) {
	g := readyGroup(t, MethodIPHash, []int{5, 1, 1})
	r := &Request{Now: time.Now().UnixNano()}
	var got []int
	for range 7 {
		got = append(got, indexOf(g, g.Select(r)))
	}
	if want := []int{0, 0, 1, 0, 2, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("picks %v without a key, want round robin %v", got, want)
	}
}
