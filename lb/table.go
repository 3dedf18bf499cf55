package lb

import (
	"bytes"
	"sort"
	"strings"
)

// Pool is one pool in a routing snapshot. It is immutable; the backends it
// points to carry the live counters.
type Pool struct {
	Name     string
	Settings *Settings
	Primary  Group
	Backup   Group
	// Emptied is set on a pool kept routable, without backends, because it
	// lost its last one less than the balancer's PoolGrace ago.
	Emptied bool
}

// Pick selects a backend for r: a primary when one is usable, else a backup.
// It returns nil when none is.
func (p *Pool) Pick(r *Request) *Backend {
	if b := p.Primary.Select(r); b != nil {
		return b
	}
	return p.Backup.Select(r)
}

// Backends returns every backend of the pool, primaries first.
func (p *Pool) Backends() []*Backend {
	out := make([]*Backend, 0, len(p.Primary.Backends)+len(p.Backup.Backends))
	out = append(out, p.Primary.Backends...)
	return append(out, p.Backup.Backends...)
}

// Len is the number of backends in the pool.
func (p *Pool) Len() int { return len(p.Primary.Backends) + len(p.Backup.Backends) }

// MaxRetries is the number of extra attempts a request may make.
func (p *Pool) MaxRetries() int {
	if r := p.Settings.Retries; r >= 0 {
		return r
	}
	n := p.Len() - 1
	if n > 3 {
		n = 3
	}
	if n < 0 {
		n = 0
	}
	return n
}

func newPool(name string, set *Settings, backends []*Backend) *Pool {
	p := &Pool{Name: name, Settings: set}
	sort.Slice(backends, func(i, j int) bool { return backends[i].ID < backends[j].ID })
	for _, b := range backends {
		if b.Backup() {
			p.Backup.Backends = append(p.Backup.Backends, b)
		} else {
			p.Primary.Backends = append(p.Primary.Backends, b)
		}
	}
	for _, g := range []*Group{&p.Primary, &p.Backup} {
		g.Settings = set
		g.sel = newSelector(g)
	}
	return p
}

// route sends requests for a host pattern and path prefix to a pool.
type route struct {
	path string
	pool *Pool
}

// Table is an immutable routing snapshot: pools by name and the rules that
// map a request's host and path to a pool. The balancer swaps it whole.
type Table struct {
	Pools map[string]*Pool

	exact    map[string][]route // host -> routes, longest path first
	wildcard []wildRoutes       // "*.example.com", longest suffix first
	anyHost  []route            // pools with a path and no host, longest first
	catchAll *Pool              // the one pool with neither host nor path, or the default pool

	// Unroutable names catch-all pools that got no traffic because there were
	// several and no default pool picked one.
	Unroutable []string
}

type wildRoutes struct {
	suffix string // ".example.com"
	routes []route
}

// NewTable builds a routing table over pools. defaultPool picks the
// catch-all when several pools have neither host nor path.
func NewTable(pools map[string]*Pool, defaultPool string) *Table {
	t := &Table{Pools: pools, exact: map[string][]route{}}
	wild := map[string][]route{}
	var catchAlls []string
	for name, p := range pools {
		s := p.Settings
		if len(s.Hosts) == 0 {
			if s.Path == "" {
				catchAlls = append(catchAlls, name)
			} else {
				t.anyHost = append(t.anyHost, route{s.Path, p})
			}
			continue
		}
		for _, h := range s.Hosts {
			if strings.HasPrefix(h, "*.") {
				wild[h[1:]] = append(wild[h[1:]], route{s.Path, p})
			} else {
				t.exact[h] = append(t.exact[h], route{s.Path, p})
			}
		}
	}
	for h, rs := range t.exact {
		sortRoutes(rs)
		t.exact[h] = rs
	}
	for suf, rs := range wild {
		sortRoutes(rs)
		t.wildcard = append(t.wildcard, wildRoutes{suf, rs})
	}
	sort.Slice(t.wildcard, func(i, j int) bool {
		if len(t.wildcard[i].suffix) != len(t.wildcard[j].suffix) {
			return len(t.wildcard[i].suffix) > len(t.wildcard[j].suffix)
		}
		return t.wildcard[i].suffix < t.wildcard[j].suffix
	})
	sortRoutes(t.anyHost)
	sort.Strings(catchAlls)
	switch {
	case defaultPool != "" && pools[defaultPool] != nil:
		t.catchAll = pools[defaultPool]
	case len(catchAlls) == 1:
		t.catchAll = pools[catchAlls[0]]
	case len(catchAlls) > 1:
		t.Unroutable = catchAlls
	}
	return t
}

func sortRoutes(rs []route) {
	sort.Slice(rs, func(i, j int) bool {
		if len(rs[i].path) != len(rs[j].path) {
			return len(rs[i].path) > len(rs[j].path)
		}
		return rs[i].pool.Name < rs[j].pool.Name
	})
}

// Route returns the pool for a request's Host header and path, or nil when no
// pool serves it. The host is matched case-insensitively with any port
// ignored; the path by longest prefix on a segment boundary. It does not
// allocate for hosts up to 255 bytes.
func (t *Table) Route(host, path []byte) *Pool {
	var buf [256]byte
	h := normalizeHost(host, buf[:0])
	if len(h) > 0 {
		if rs, ok := t.exact[string(h)]; ok {
			if p := matchPath(rs, path); p != nil {
				return p
			}
		}
		for _, w := range t.wildcard {
			if len(h) > len(w.suffix) && string(h[len(h)-len(w.suffix):]) == w.suffix {
				if p := matchPath(w.routes, path); p != nil {
					return p
				}
			}
		}
	}
	if p := matchPath(t.anyHost, path); p != nil {
		return p
	}
	return t.catchAll
}

func matchPath(rs []route, path []byte) *Pool {
	for _, r := range rs {
		if PathMatches(r.path, path) {
			return r.pool
		}
	}
	return nil
}

// PathMatches reports whether prefix matches path on a segment boundary:
// "/api" matches "/api", "/api/" and "/api/x" but not "/apix". An empty
// prefix matches everything; a prefix ending in "/" matches as a plain prefix.
func PathMatches(prefix string, path []byte) bool {
	if prefix == "" {
		return true
	}
	if len(path) < len(prefix) || string(path[:len(prefix)]) != prefix {
		return false
	}
	if len(path) == len(prefix) || prefix[len(prefix)-1] == '/' {
		return true
	}
	c := path[len(prefix)]
	return c == '/' || c == '?'
}

// normalizeHost lower-cases host and strips a port, writing into buf.
func normalizeHost(host, buf []byte) []byte {
	if len(host) > cap(buf) {
		host = host[:cap(buf)]
	}
	end := len(host)
	if end > 0 && host[0] == '[' { // [v6]:port
		if i := bytes.IndexByte(host, ']'); i > 0 {
			end = i + 1
		}
	} else if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		end = i
	}
	for _, c := range host[:end] {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	if n := len(buf); n > 0 && buf[n-1] == '.' { // "example.com." is "example.com"
		buf = buf[:n-1]
	}
	return buf
}
