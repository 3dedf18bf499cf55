package lb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

// userKey is the n-th key of the tests: a path, as hash.key=path passes it.
func userKey(n int) []byte { return []byte("/user/" + strconv.Itoa(n)) }

func TestHashKeyIsPinned(t *testing.T) {
	// Changing hashKey remaps every key of every pool on upgrade, and two
	// Shoal versions behind one VIP would disagree. Change these only on
	// purpose.
	tests := []struct {
		key  string
		want uint64
	}{
		{"", 0xf490368aba8bfeac},
		{"\x0a\x01\x02", 0xd9582897572c8ef0},
		{"/user/42", 0x49676b204e720071},
		{"a key longer than sixteen bytes", 0x63091d344e9b73b4},
	}
	for _, tt := range tests {
		if got := hashKey([]byte(tt.key)); got != tt.want {
			t.Errorf("hashKey(%q) = %#x, want %#x", tt.key, got, tt.want)
		}
	}
}

// mapping returns the backend ID each of keys keys goes to.
func mapping(g *Group, keys int) []string {
	out := make([]string, keys)
	r := &Request{Now: time.Now().UnixNano()}
	for i := range out {
		r.Key = userKey(i)
		out[i] = g.Select(r).ID
	}
	return out
}

func TestConsistentHashMovesFewKeys(t *testing.T) {
	const keys = 100000
	ten := readyGroup(t, MethodHash, equalWeights(10))
	base := mapping(ten, keys)

	t.Run("remove one of ten", func(t *testing.T) {
		set := *ten.Settings
		var bs []*Backend
		for i := range 10 {
			if i != 3 {
				bs = append(bs, readyBackend(t, &set, fmt.Sprintf("b%04d", i), 1))
			}
		}
		after := mapping(&newPool("p", &set, bs).Primary, keys)
		moved := 0
		for i := range base {
			if base[i] != after[i] {
				moved++
				if base[i] != "b0003" {
					t.Fatalf("key %d moved from %s, which is still there, to %s", i, base[i], after[i])
				}
			}
		}
		if f := float64(moved) / keys; f > 0.15 {
			t.Errorf("%.1f%% of keys moved, want at most 15%%", 100*f)
		}
	})
	t.Run("add one to ten", func(t *testing.T) {
		eleven := readyGroup(t, MethodHash, equalWeights(11))
		after := mapping(eleven, keys)
		moved := 0
		for i := range base {
			if base[i] != after[i] {
				moved++
				if after[i] != "b0010" {
					t.Fatalf("key %d moved from %s to %s, not to the new backend", i, base[i], after[i])
				}
			}
		}
		if f := float64(moved) / keys; f > 0.15 {
			t.Errorf("%.1f%% of keys moved, want at most 15%%", 100*f)
		}
	})
}

func TestHashSameMappingWhateverTheOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, m := range benchMethods {
		if m.method != MethodHash && m.method != MethodIPHash {
			continue
		}
		t.Run(m.desc, func(t *testing.T) {
			build := func() *Group {
				set := DefaultSettings()
				set.Method = m.method
				for _, o := range m.opts {
					o(&set)
				}
				bs := make([]*Backend, 20)
				for i, k := range rng.Perm(20) { // discovered in a random order
					bs[i] = readyBackend(t, &set, fmt.Sprintf("c%02d", k), 1+k%3)
				}
				return &newPool("p", &set, bs).Primary
			}
			a, b := mapping(build(), 10000), mapping(build(), 10000)
			if !slices.Equal(a, b) {
				t.Error("two pools of the same backends, discovered in different orders, map keys differently")
			}
		})
	}
}

func TestHashSharesFollowWeights(t *testing.T) {
	const keys = 200000
	for _, m := range benchMethods {
		if m.method != MethodHash || m.desc == "hash_bounded" {
			continue
		}
		t.Run(m.desc, func(t *testing.T) {
			weights := []int{1, 2, 3, 4}
			g := readyGroup(t, m.method, weights, m.opts...)
			got := make([]int, len(weights))
			r := &Request{Now: time.Now().UnixNano()}
			for i := range keys {
				r.Key = userKey(i)
				got[indexOf(g, g.Select(r))]++
			}
			for i, w := range weights {
				want := float64(keys*w) / 10
				if d := math.Abs(float64(got[i])-want) / want; d > 0.15 {
					t.Errorf("backend %d (weight %d): %d keys, want %.0f ± 15%% (%v)", i, w, got[i], want, got)
				}
			}
		})
	}
}

func TestHashUnusableBackendWalksOn(t *testing.T) {
	g := readyGroup(t, MethodHash, equalWeights(10))
	base := mapping(g, 10000)
	g.Backends[4].SetManualDrain(true)
	after := mapping(g, 10000)
	for i := range base {
		if after[i] == "b0004" || (base[i] != "b0004" && base[i] != after[i]) {
			t.Fatalf("key %d: %s before the drain of b0004, %s after", i, base[i], after[i])
		}
	}
}

func TestHashMissingKeyIsRoundRobin(t *testing.T) {
	g := readyGroup(t, MethodHash, []int{5, 1, 1})
	r := &Request{Now: time.Now().UnixNano()}
	var got []int
	for range 7 {
		got = append(got, indexOf(g, g.Select(r)))
	}
	if want := []int{0, 0, 1, 0, 2, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("picks %v without a key, want round robin %v", got, want)
	}
}

func TestHashBoundedLoads(t *testing.T) {
	const n, factor = 10, 1.25
	g := readyGroup(t, MethodHash, equalWeights(n), func(s *Settings) { s.BalanceFactor = factor })
	ch := g.sel.(*consistentHash)
	rng := rand.New(rand.NewPCG(11, 12))
	r := &Request{Now: time.Now().UnixNano()}
	var held []*Backend
	var total int64
	away := 0 // picks that the bound sent away from the key's own backend
	for step := range 20000 {
		// A skewed key set: half the requests share ten hot keys.
		if rng.IntN(2) == 0 {
			r.Key = userKey(rng.IntN(10))
		} else {
			r.Key = userKey(rng.IntN(1 << 20))
		}
		b := g.Select(r)
		if home := g.Backends[ch.ring.owners[ch.ring.search(uint32(hashKey(r.Key)>>32))]]; b != home {
			away++
		}
		b.Acquire()
		total++
		held = append(held, b)
		if bound := int64(math.Ceil(factor * float64(total) / n)); b.InFlight() > bound {
			t.Fatalf("step %d: %s has %d in flight, above the bound %d (total %d)", step, b.ID, b.InFlight(), bound, total)
		}
		// Requests end at random, keeping about 200 in flight.
		for len(held) > 0 && rng.IntN(200) < len(held) {
			k := rng.IntN(len(held))
			held[k].Release(0)
			held[k] = held[len(held)-1]
			held = held[:len(held)-1]
			total--
		}
	}
	if away == 0 {
		t.Error("the bound never sent a key away from its backend; the test proves nothing")
	}
	t.Logf("%d of 20000 picks went past the key's own backend", away)
}

// rendezvous is highest random weight hashing over backend IDs, kept here
// to measure the ring against (see the comment at the top of hash.go).
type rendezvous struct {
	ids []uint64 // hashKey of each backend ID
	w   []float64
}

func newRendezvous(g *Group) *rendezvous {
	h := &rendezvous{}
	for _, b := range g.Backends {
		h.ids = append(h.ids, hashKey([]byte(b.ID)))
		h.w = append(h.w, float64(b.Weight()))
	}
	return h
}

func (h *rendezvous) pick(key uint64) int {
	best, top := 0, uint64(0)
	for i, id := range h.ids {
		if s := mix64(key ^ id); s >= top {
			best, top = i, s
		}
	}
	return best
}

// pickWeighted is weighted HRW (Schindelhauer and Schomaker): the highest
// -w/ln(u), with u the score as a fraction in (0, 1).
func (h *rendezvous) pickWeighted(key uint64) int {
	best, top := 0, math.Inf(-1)
	for i, id := range h.ids {
		u := (float64(mix64(key^id)>>11) + 0.5) / (1 << 53)
		if s := -h.w[i] / math.Log(u); s > top {
			best, top = i, s
		}
	}
	return best
}

// spread returns the busiest backend's load and the standard deviation of
// the loads, both relative to the mean.
func spread(counts []int) (maxRel, stdRel float64) {
	mean := 0.0
	for _, c := range counts {
		mean += float64(c)
	}
	mean /= float64(len(counts))
	var m, v float64
	for _, c := range counts {
		m = max(m, float64(c))
		v += (float64(c) - mean) * (float64(c) - mean)
	}
	return m / mean, math.Sqrt(v/float64(len(counts))) / mean
}

func TestRingVersusRendezvous(t *testing.T) {
	const keys = 1000000
	for _, n := range []int{10, 100} {
		g := readyGroup(t, MethodHash, equalWeights(n))
		ch, hrw := g.sel.(*consistentHash), newRendezvous(g)
		ringCount, hrwCount := make([]int, n), make([]int, n)
		for i := range keys {
			h := hashKey(userKey(i))
			ringCount[ch.ring.owners[ch.ring.search(uint32(h>>32))]]++
			hrwCount[hrw.pick(h)]++
		}
		rm, rs := spread(ringCount)
		hm, hs := spread(hrwCount)
		t.Logf("n=%d: ring max/mean %.3f stddev/mean %.3f (%d points); HRW max/mean %.3f stddev/mean %.3f",
			n, rm, rs, len(ch.ring.points), hm, hs)
		if rm > 1.35 {
			t.Errorf("n=%d: the ring's busiest backend has %.2fx the mean load, want at most 1.35x", n, rm)
		}
	}
}

func BenchmarkRingVersusRendezvous(b *testing.B) {
	keys := make([]uint64, 1024)
	for i := range keys {
		keys[i] = hashKey(userKey(i))
	}
	for _, n := range []int{10, 100} {
		g := readyGroup(b, MethodHash, equalWeights(n))
		ch, hrw := g.sel.(*consistentHash), newRendezvous(g)
		sink := 0
		b.Run(fmt.Sprintf("ring/n=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				sink += int(ch.ring.owners[ch.ring.search(uint32(keys[i&1023]>>32))])
				i++
			}
		})
		b.Run(fmt.Sprintf("hrw/n=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				sink += hrw.pick(keys[i&1023])
				i++
			}
		})
		b.Run(fmt.Sprintf("hrw_weighted/n=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				sink += hrw.pickWeighted(keys[i&1023])
				i++
			}
		})
		_ = sink
	}
}
