package lb

import (
	"errors"
	"testing"
	"time"
)

func TestParseSettings(t *testing.T) {
	tests := []struct {
		desc    string
		kv      map[string]string
		wantErr string // the key the error names; "" for none
		check   func(s Settings) bool
	}{
		{"defaults", nil, "", func(s Settings) bool {
			return s.Method == MethodRoundRobin && s.MaxFails == 1 && s.FailTimeout == 10*time.Second && s.Retries == -1 && s.Health.Interval == 2*time.Second && s.Queue == 100
		}},
		{"method", map[string]string{"method": "least_time"}, "", func(s Settings) bool { return s.Method == MethodLeastTime }},
		{"hash needs a key", map[string]string{"method": "hash"}, "hash.key", nil},
		{"hash key", map[string]string{"method": "hash", "hash.key": "cookie:sid"}, "", func(s Settings) bool { return s.HashKey == "cookie:sid" }},
		{"bad hash key", map[string]string{"hash.key": "body"}, "hash.key", nil},
		{"balance factor must exceed 1", map[string]string{"hash.balance_factor": "1"}, "hash.balance_factor", nil},
		{"status range", map[string]string{"health.status": "2xx-3xx"}, "", func(s Settings) bool { return s.Health.StatusLo == 200 && s.Health.StatusHi == 399 }},
		{"single status", map[string]string{"health.status": "204"}, "", func(s Settings) bool { return s.Health.StatusLo == 204 && s.Health.StatusHi == 204 }},
		{"bad status", map[string]string{"health.status": "299-200"}, "health.status", nil},
		{"hosts lower-cased", map[string]string{"host": "A.com, *.B.com"}, "", func(s Settings) bool { return len(s.Hosts) == 2 && s.Hosts[0] == "a.com" && s.Hosts[1] == "*.b.com" }},
		{"wildcard only as the first label", map[string]string{"host": "a.*.com"}, "host", nil},
		{"negative duration", map[string]string{"fail_timeout": "-1s"}, "fail_timeout", nil},
		{"unknown key", map[string]string{"speed": "fast"}, "speed", nil},
		{"retries", map[string]string{"retries": "0"}, "", func(s Settings) bool { return s.Retries == 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, err := ParseSettings(tc.kv)
			if tc.wantErr != "" {
				var ke *KeyError
				if !errors.As(err, &ke) || ke.Key != tc.wantErr || ke.Expected == "" {
					t.Fatalf("err = %v, want a KeyError for %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(s) {
				t.Fatalf("settings = %+v", s)
			}
		})
	}
}
