package lb

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Method names accepted by the "method" key.
const (
	MethodRoundRobin = "round_robin"
	MethodLeastConn  = "least_conn"
	MethodIPHash     = "ip_hash"
	MethodHash       = "hash"
	MethodLeastTime  = "least_time"
	MethodRandom     = "random"
)

// Settings are the pool-level knobs. The same keys are read from container
// labels (after the prefix, e.g. "shoal.method") and from the config file.
// The zero value is not useful; start from DefaultSettings.
type Settings struct {
	Method string // one of the Method* constants; default round_robin

	HashKey          string  // hash: header:NAME, cookie:NAME, query:NAME, path, uri, remote_addr
	HashConsistent   bool    // hash: ring-based; default true
	BalanceFactor    float64 // hash: bounded loads factor (>1), 0 = off
	LeastTimeMeasure string  // least_time: "header" (default) or "last_byte"
	RandomChoices    int     // random: choices drawn, default 2

	Hosts []string // host names this pool serves (lower case, "*.x" wildcards allowed)
	Path  string   // path prefix this pool serves

	Health HealthCheck

	MaxFails    int           // passive: failures within FailTimeout that mark a backend down; 0 = off; default 1
	FailTimeout time.Duration // passive: window and down time; default 10s
	FailOn5xx   bool          // passive: count 5xx responses as failures; default false

	Retries      int           // extra attempts on other backends; -1 = pool size minus 1, at most 3
	RetryTimeout time.Duration // total time budget for retries; default 10s

	SlowStart time.Duration // ramp-up of the effective weight after a backend becomes ready; 0 = off

	MaxConns     int           // cap of in-flight requests per backend; 0 = unlimited
	Queue        int           // requests allowed to wait when every backend is at MaxConns; default 100
	QueueTimeout time.Duration // how long a queued request waits before 503; default 5s
}

// HealthCheck configures the active health check. Path "" means no active check.
type HealthCheck struct {
	Path     string
	Interval time.Duration // default 2s
	Timeout  time.Duration // default 1s
	StatusLo int           // lowest accepted status, default 200
	StatusHi int           // highest accepted status, default 399
	Fails    int           // consecutive failures before down, default 2
	Passes   int           // consecutive passes before up, default 1
}

// DefaultSettings returns the settings of a pool that sets nothing.
func DefaultSettings() Settings {
	return Settings{
		Method:           MethodRoundRobin,
		HashConsistent:   true,
		LeastTimeMeasure: "header",
		RandomChoices:    2,
		Health: HealthCheck{
			Interval: 2 * time.Second,
			Timeout:  time.Second,
			StatusLo: 200,
			StatusHi: 399,
			Fails:    2,
			Passes:   1,
		},
		MaxFails:     1,
		FailTimeout:  10 * time.Second,
		Retries:      -1,
		RetryTimeout: 10 * time.Second,
		Queue:        100,
		QueueTimeout: 5 * time.Second,
	}
}

// PoolKeys lists every pool-level key with what it expects, in the words
// used by warnings. Server-level keys (enable, pool, port, weight, backup,
// network) are not here.
var PoolKeys = map[string]string{
	"method":              "one of round_robin, least_conn, ip_hash, hash, least_time, random",
	"hash.key":            "header:NAME, cookie:NAME, query:NAME, path, uri or remote_addr",
	"hash.consistent":     "true or false",
	"hash.balance_factor": "a number above 1, e.g. 1.25",
	"least_time.measure":  "header or last_byte",
	"random.choices":      "an integer from 1 to 10",
	"host":                "comma-separated host names, e.g. api.example.com,*.example.com",
	"path":                "a path prefix starting with /",
	"health.path":         "a path starting with /",
	"health.interval":     "a duration such as 2s",
	"health.timeout":      "a duration such as 1s",
	"health.status":       "a status (200) or range (200-399)",
	"health.fails":        "an integer from 1 to 100",
	"health.passes":       "an integer from 1 to 100",
	"max_fails":           "an integer from 0 to 1000",
	"fail_timeout":        "a duration such as 10s",
	"fail_on_5xx":         "true or false",
	"retries":             "an integer from 0 to 10",
	"retry_timeout":       "a duration such as 10s",
	"slow_start":          "a duration such as 30s",
	"max_conns":           "an integer from 0 to 1000000",
	"queue":               "an integer from 0 to 1000000",
	"queue_timeout":       "a duration such as 5s",
}

// KeyError says which key had a bad value and what was expected.
type KeyError struct {
	Key, Value, Expected string
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("%s=%q: expected %s", e.Key, e.Value, e.Expected)
}

// ParseSettings applies kv (pool-level keys without the label prefix) on top
// of DefaultSettings. Unknown keys are ignored by the caller's choice: pass
// only keys from PoolKeys. The first bad value is returned as a *KeyError and
// the returned settings must then not be used.
func ParseSettings(kv map[string]string) (Settings, error) {
	s := DefaultSettings()
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic: the same file gives the same first error
	for _, k := range keys {
		if err := s.set(k, strings.TrimSpace(kv[k])); err != nil {
			return s, err
		}
	}
	if s.Method == MethodHash && s.HashKey == "" {
		return s, &KeyError{Key: "hash.key", Value: "", Expected: "a key when method=hash: " + PoolKeys["hash.key"]}
	}
	return s, nil
}

func (s *Settings) set(k, v string) error {
	bad := func() error {
		exp, ok := PoolKeys[k]
		if !ok {
			exp = "a known key"
		}
		return &KeyError{Key: k, Value: v, Expected: exp}
	}
	var err error
	switch k {
	case "method":
		switch v {
		case MethodRoundRobin, MethodLeastConn, MethodIPHash, MethodHash, MethodLeastTime, MethodRandom:
			s.Method = v
		default:
			return bad()
		}
	case "hash.key":
		if !ValidHashKey(v) {
			return bad()
		}
		s.HashKey = v
	case "hash.consistent":
		s.HashConsistent, err = strconv.ParseBool(v)
	case "hash.balance_factor":
		s.BalanceFactor, err = strconv.ParseFloat(v, 64)
		if err == nil && s.BalanceFactor <= 1 {
			return bad()
		}
	case "least_time.measure":
		if v != "header" && v != "last_byte" {
			return bad()
		}
		s.LeastTimeMeasure = v
	case "random.choices":
		s.RandomChoices, err = intIn(v, 1, 10)
	case "host":
		s.Hosts = nil
		for _, h := range strings.Split(v, ",") {
			h = strings.ToLower(strings.TrimSpace(h))
			if h == "" {
				continue
			}
			if strings.ContainsAny(h, " /:") || (strings.Contains(h, "*") && !strings.HasPrefix(h, "*.")) || strings.Count(h, "*") > 1 {
				return bad()
			}
			s.Hosts = append(s.Hosts, h)
		}
	case "path":
		if !strings.HasPrefix(v, "/") {
			return bad()
		}
		s.Path = v
	case "health.path":
		if !strings.HasPrefix(v, "/") {
			return bad()
		}
		s.Health.Path = v
	case "health.interval":
		s.Health.Interval, err = positiveDuration(v)
	case "health.timeout":
		s.Health.Timeout, err = positiveDuration(v)
	case "health.status":
		s.Health.StatusLo, s.Health.StatusHi, err = statusRange(v)
	case "health.fails":
		s.Health.Fails, err = intIn(v, 1, 100)
	case "health.passes":
		s.Health.Passes, err = intIn(v, 1, 100)
	case "max_fails":
		s.MaxFails, err = intIn(v, 0, 1000)
	case "fail_timeout":
		s.FailTimeout, err = positiveDuration(v)
	case "fail_on_5xx":
		s.FailOn5xx, err = strconv.ParseBool(v)
	case "retries":
		s.Retries, err = intIn(v, 0, 10)
	case "retry_timeout":
		s.RetryTimeout, err = positiveDuration(v)
	case "slow_start":
		s.SlowStart, err = time.ParseDuration(v)
		if err == nil && s.SlowStart < 0 {
			return bad()
		}
	case "max_conns":
		s.MaxConns, err = intIn(v, 0, 1000000)
	case "queue":
		s.Queue, err = intIn(v, 0, 1000000)
	case "queue_timeout":
		s.QueueTimeout, err = positiveDuration(v)
	default:
		return bad()
	}
	if err != nil {
		return bad()
	}
	return nil
}

// ValidHashKey reports whether v names a hash key source.
func ValidHashKey(v string) bool {
	switch v {
	case "path", "uri", "remote_addr":
		return true
	}
	for _, p := range []string{"header:", "cookie:", "query:"} {
		if strings.HasPrefix(v, p) && len(v) > len(p) {
			return true
		}
	}
	return false
}

func intIn(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("out of range")
	}
	return n, nil
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("not positive")
	}
	return d, nil
}

// statusRange parses "200", "200-399", "2xx" or "2xx-3xx".
func statusRange(v string) (int, int, error) {
	lo, hi, found := strings.Cut(v, "-")
	if !found {
		hi = lo
	}
	l, err := statusBound(lo, false)
	if err != nil {
		return 0, 0, err
	}
	h, err := statusBound(hi, true)
	if err != nil {
		return 0, 0, err
	}
	if l > h {
		return 0, 0, fmt.Errorf("empty range")
	}
	return l, h, nil
}

func statusBound(v string, upper bool) (int, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	if len(v) == 3 && strings.HasSuffix(v, "xx") && v[0] >= '1' && v[0] <= '5' {
		n := int(v[0]-'0') * 100
		if upper {
			n += 99
		}
		return n, nil
	}
	return intIn(v, 100, 599)
}
