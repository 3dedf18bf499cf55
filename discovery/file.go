package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"github.com/shoal-lb/shoal/lb"
	"go.yaml.in/yaml/v3"
)

// FileConfig is a parsed config file: global settings and static pools.
// Pointer fields are nil when the file does not set them.
type FileConfig struct {
	Listen          string
	Admin           string
	Network         string
	LabelPrefix     string
	DefaultPool     string
	LogLevel        string
	TrustedProxies  []string
	ExposeByDefault *bool
	Docker          *bool
	AccessLog       *bool
	Pools           []lb.PoolSpec
}

// ConfigError points at the line of a config file that is wrong.
type ConfigError struct {
	File string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

var globalKeys = map[string]string{
	"listen":            "an address such as :8080",
	"admin":             "an address such as 127.0.0.1:9180",
	"network":           "a network name",
	"label_prefix":      "a label prefix such as shoal",
	"default_pool":      "a pool name",
	"log_level":         "debug, info, warn or error",
	"trusted_proxies":   "a list of CIDRs",
	"expose_by_default": "true or false",
	"docker":            "true or false",
	"access_log":        "true or false",
	"pools":             "a mapping of pool names to pools",
}

// ParseConfig parses a config file's bytes; name is used in errors.
func ParseConfig(name string, data []byte) (*FileConfig, error) {
	fail := func(n *yaml.Node, format string, args ...any) error {
		line := 0
		if n != nil {
			line = n.Line
		}
		return &ConfigError{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		if _, rest, ok := strings.Cut(msg, "line "); ok {
			n, _, _ := strings.Cut(rest, ":")
			line, _ = strconv.Atoi(n)
		}
		return nil, &ConfigError{File: name, Line: line, Msg: msg}
	}
	cfg := &FileConfig{}
	if len(doc.Content) == 0 {
		return cfg, nil // an empty file is an empty config
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fail(root, "expected a mapping at the top level")
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		exp, known := globalKeys[k.Value]
		if !known {
			return nil, fail(k, "unknown key %q", k.Value)
		}
		str := func() (string, error) {
			if v.Kind != yaml.ScalarNode {
				return "", fail(v, "%s: expected %s", k.Value, exp)
			}
			return v.Value, nil
		}
		boolean := func() (*bool, error) {
			b, err := strconv.ParseBool(v.Value)
			if v.Kind != yaml.ScalarNode || err != nil {
				return nil, fail(v, "%s: %q: expected %s", k.Value, v.Value, exp)
			}
			return &b, nil
		}
		var err error
		switch k.Value {
		case "listen":
			cfg.Listen, err = str()
		case "admin":
			cfg.Admin, err = str()
		case "network":
			cfg.Network, err = str()
		case "label_prefix":
			cfg.LabelPrefix, err = str()
		case "default_pool":
			cfg.DefaultPool, err = str()
		case "log_level":
			cfg.LogLevel, err = str()
			if _, perr := zerolog.ParseLevel(cfg.LogLevel); err == nil && perr != nil {
				err = fail(v, "log_level: %q: expected %s", v.Value, exp)
			}
		case "trusted_proxies":
			cfg.TrustedProxies, err = scalars(v)
			if err != nil {
				err = fail(v, "trusted_proxies: expected %s", exp)
			}
		case "expose_by_default":
			cfg.ExposeByDefault, err = boolean()
		case "docker":
			cfg.Docker, err = boolean()
		case "access_log":
			cfg.AccessLog, err = boolean()
		case "pools":
			cfg.Pools, err = parsePools(v, fail)
		}
		if err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

type failFunc func(n *yaml.Node, format string, args ...any) error

func parsePools(n *yaml.Node, fail failFunc) ([]lb.PoolSpec, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fail(n, "pools: expected a mapping of pool names to pools")
	}
	var out []lb.PoolSpec
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, body := n.Content[i].Value, n.Content[i+1]
		if body.Kind != yaml.MappingNode {
			return nil, fail(body, "pools.%s: expected a mapping", name)
		}
		kv := map[string]string{}
		lines := map[string]*yaml.Node{}
		var servers []lb.Server
		for j := 0; j+1 < len(body.Content); j += 2 {
			k, v := body.Content[j], body.Content[j+1]
			if k.Value == "servers" {
				var err error
				servers, err = parseServers(name, v, fail)
				if err != nil {
					return nil, err
				}
				continue
			}
			if err := flatten(k.Value, k, v, kv, lines, fail, name); err != nil {
				return nil, err
			}
		}
		set, err := lb.ParseSettings(kv)
		if err != nil {
			var ke *lb.KeyError
			if errors.As(err, &ke) {
				return nil, fail(lines[ke.Key], "pools.%s.%s: %q: expected %s", name, ke.Key, ke.Value, ke.Expected)
			}
			return nil, fail(body, "pools.%s: %v", name, err)
		}
		out = append(out, lb.PoolSpec{Name: name, Settings: set, Servers: servers})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// flatten turns nested keys into the label form: health: {path: /x} is
// "health.path". A list (e.g. host) becomes a comma-separated value.
func flatten(key string, kn, v *yaml.Node, kv map[string]string, lines map[string]*yaml.Node, fail failFunc, pool string) error {
	switch v.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(v.Content); i += 2 {
			if err := flatten(key+"."+v.Content[i].Value, v.Content[i], v.Content[i+1], kv, lines, fail, pool); err != nil {
				return err
			}
		}
		return nil
	case yaml.SequenceNode:
		vals, err := scalars(v)
		if err != nil {
			return fail(v, "pools.%s.%s: expected a value or a list of values", pool, key)
		}
		kv[key] = strings.Join(vals, ",")
	case yaml.ScalarNode:
		kv[key] = v.Value
	default:
		return fail(v, "pools.%s.%s: unexpected value", pool, key)
	}
	if _, ok := lb.PoolKeys[key]; !ok {
		return fail(kn, "pools.%s: unknown key %q", pool, key)
	}
	lines[key] = kn
	return nil
}

func parseServers(pool string, n *yaml.Node, fail failFunc) ([]lb.Server, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fail(n, "pools.%s.servers: expected a list of servers", pool)
	}
	var out []lb.Server
	seen := map[string]bool{}
	for _, sn := range n.Content {
		if sn.Kind != yaml.MappingNode {
			return nil, fail(sn, "pools.%s.servers: expected a mapping with an address", pool)
		}
		s := lb.Server{Weight: 1, Source: "file"}
		for i := 0; i+1 < len(sn.Content); i += 2 {
			k, v := sn.Content[i], sn.Content[i+1]
			switch k.Value {
			case "address":
				s.Address = v.Value
			case "name":
				s.Name = v.Value
			case "weight":
				w, err := strconv.Atoi(v.Value)
				if err != nil || w < 1 || w > 1000 {
					return nil, fail(v, "pools.%s.servers: weight %q: expected an integer from 1 to 1000", pool, v.Value)
				}
				s.Weight = w
			case "backup":
				b, err := strconv.ParseBool(v.Value)
				if err != nil {
					return nil, fail(v, "pools.%s.servers: backup %q: expected true or false", pool, v.Value)
				}
				s.Backup = b
			default:
				return nil, fail(k, "pools.%s.servers: unknown key %q (expected address, name, weight, backup)", pool, k.Value)
			}
		}
		if _, port, ok := strings.Cut(s.Address, ":"); !ok || port == "" || strings.Contains(s.Address, "/") {
			return nil, fail(sn, "pools.%s.servers: address %q: expected host:port", pool, s.Address)
		}
		if seen[s.Address] {
			return nil, fail(sn, "pools.%s.servers: address %s is listed twice", pool, s.Address)
		}
		seen[s.Address] = true
		s.ID = "file:" + pool + "/" + s.Address
		if s.Name == "" {
			s.Name = s.Address
		}
		out = append(out, s)
	}
	return out, nil
}

func scalars(n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New("not a list")
	}
	var out []string
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			return nil, errors.New("not a list of values")
		}
		out = append(out, c.Value)
	}
	return out, nil
}

// FileConfigWatcher loads a config file, feeds its pools to the sink, and
// reloads it on change. A file that does not parse keeps the previous
// config and logs the line and the reason.
type FileConfigWatcher struct {
	Path string
	Sink Sink
	Log  zerolog.Logger
	// OnReload, if set, is called after every reload attempt with the new
	// config (nil when it failed).
	OnReload func(cfg *FileConfig, err error)

	last []byte
}

// Load reads, parses and applies the file once.
func (w *FileConfigWatcher) Load() (*FileConfig, error) {
	data, err := os.ReadFile(w.Path)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(w.Path, data)
	if err != nil {
		return nil, err
	}
	w.last = data
	w.Sink.Update("file", cfg.Pools)
	return cfg, nil
}

// Run watches the file's directory, so that editors' atomic renames and
// symlink swaps are seen, until ctx ends.
func (w *FileConfigWatcher) Run(ctx context.Context) error {
	return w.watch(ctx, nil)
}

// watch is Run; it closes ready, if given, once the watch is in place.
func (w *FileConfigWatcher) watch(ctx context.Context, ready chan<- struct{}) error {
	log := w.Log.With().Str("component", "config").Str("file", w.Path).Logger()
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fw.Close()
	if err := fw.Add(filepath.Dir(w.Path)); err != nil {
		return err
	}
	if ready != nil {
		close(ready)
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fw.Errors:
			log.Warn().Err(err).Msg("watching the config file")
		case <-fw.Events:
			// Any change in the directory may be ours (renames, symlink
			// swaps); wait for the writes to settle, then compare bytes.
			debounce = time.After(100 * time.Millisecond)
		case <-debounce:
			debounce = nil
			w.reload(log)
		}
	}
}

func (w *FileConfigWatcher) reload(log zerolog.Logger) {
	data, err := os.ReadFile(w.Path)
	if err != nil {
		if os.IsNotExist(err) {
			return // mid-rename; the next event brings it back
		}
		log.Error().Err(err).Msg("config reload failed; keeping the previous config")
		w.report(nil, err)
		return
	}
	if bytes.Equal(data, w.last) {
		return
	}
	cfg, err := ParseConfig(w.Path, data)
	if err != nil {
		log.Error().Err(err).Msg("config reload failed; keeping the previous config")
		w.last = data // do not report the same bad file again
		w.report(nil, err)
		return
	}
	w.last = data
	w.Sink.Update("file", cfg.Pools)
	log.Info().Int("pools", len(cfg.Pools)).Msg("config reloaded")
	w.report(cfg, nil)
}

func (w *FileConfigWatcher) report(cfg *FileConfig, err error) {
	if w.OnReload != nil {
		w.OnReload(cfg, err)
	}
}
