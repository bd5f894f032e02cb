package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferryrtc/ferry/config"
)

// Compile-time interface guards.
var (
	_ fmt.Stringer   = (*Policy)(nil)
	_ slog.LogValuer = (*Policy)(nil)
)

// apiKey is a configured API key, kept only as its SHA-256 digest.
type apiKey struct {
	sum [sha256.Size]byte
	// id names the key in logs and limiter maps: 8 hex digits of the
	// digest, never the key.
	id string
}

// limit is a token bucket's settings.
type limit struct {
	every rate.Limit
	burst int
}

// Policy is an immutable set of the credentials API's settings: API keys,
// allowed origins, rate limits and the TTL cap. NewPolicy builds one; reload
// builds a new one and swaps it in with API.Swap.
type Policy struct {
	keys      []apiKey
	origins   map[string]bool
	anonymous bool
	perKey    limit
	perIP     limit
	maxTTL    time.Duration
}

// NewPolicy builds a policy from the http.* settings and auth.max-ttl.
// Errors name the config key.
func NewPolicy(h config.HTTP, maxTTL time.Duration) (*Policy, error) {
	p := &Policy{
		origins:   make(map[string]bool, len(h.CORSOrigins)),
		anonymous: h.AllowAnonymousOrigins,
		perKey:    limit{perMinute(h.Rate), h.Burst},
		perIP:     limit{perMinute(h.IPRate), h.IPBurst},
		maxTTL:    maxTTL,
	}
	if maxTTL <= 0 {
		return nil, fmt.Errorf("auth.max-ttl: %s is not positive", maxTTL)
	}
	for _, l := range []struct {
		key string
		n   int
	}{{"http.rate", h.Rate}, {"http.burst", h.Burst}, {"http.ip-rate", h.IPRate}, {"http.ip-burst", h.IPBurst}} {
		if l.n < 1 {
			return nil, fmt.Errorf("%s: %d is not positive", l.key, l.n)
		}
	}
	seen := map[[sha256.Size]byte]int{}
	for i, k := range h.APIKeys {
		if k == "" {
			return nil, fmt.Errorf("http.api-keys: key #%d is empty", i+1)
		}
		sum := sha256.Sum256([]byte(k))
		if j, dup := seen[sum]; dup {
			return nil, fmt.Errorf("http.api-keys: key #%d repeats key #%d", i+1, j)
		}
		seen[sum] = i + 1
		p.keys = append(p.keys, apiKey{sum: sum, id: hex.EncodeToString(sum[:4])})
	}
	for _, o := range h.CORSOrigins {
		c, err := config.CanonicalOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("http.cors-origins: %w", err)
		}
		p.origins[c] = true
	}
	if p.anonymous && len(p.origins) == 0 {
		return nil, fmt.Errorf("http.allow-anonymous-origins: no http.cors-origins to allow")
	}
	return p, nil
}

func perMinute(n int) rate.Limit { return rate.Limit(float64(n) / 60) }

// match returns the configured key equal to presented. Every key is compared,
// in constant time, whatever matches.
func (p *Policy) match(presented string) (apiKey, bool) {
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range p.keys {
		eq := subtle.ConstantTimeCompare(sum[:], p.keys[i].sum[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return apiKey{}, false
	}
	return p.keys[found], true
}

// originAllowed reports whether a browser Origin header names an allowed
// origin. Browsers send the origin canonical (lower case, no default port).
func (p *Policy) originAllowed(origin string) bool { return p.origins[origin] }

// String describes the policy without any key.
func (p *Policy) String() string {
	if p == nil {
		return "credentials API policy <nil>"
	}
	return fmt.Sprintf("credentials API policy keys=%d origins=%d anonymous=%v", len(p.keys), len(p.origins), p.anonymous)
}

// LogValue keeps keys out of structured logs.
func (p *Policy) LogValue() slog.Value {
	if p == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.Int("api_keys", len(p.keys)),
		slog.Int("cors_origins", len(p.origins)),
		slog.Bool("anonymous_origins", p.anonymous),
	)
}

// Diff describes what changed from old to new for a reload log line, e.g.
// "api keys 1->2 +1 -0, origins 1->1", naming no key. A nil policy counts as
// empty.
func Diff(old, new *Policy) string {
	var o, n Policy
	if old != nil {
		o = *old
	}
	if new != nil {
		n = *new
	}
	has := func(list []apiKey, k apiKey) bool {
		for _, x := range list {
			if x.sum == k.sum {
				return true
			}
		}
		return false
	}
	added, removed := 0, 0
	for _, k := range n.keys {
		if !has(o.keys, k) {
			added++
		}
	}
	for _, k := range o.keys {
		if !has(n.keys, k) {
			removed++
		}
	}
	s := fmt.Sprintf("api keys %d->%d +%d -%d, origins %d->%d", len(o.keys), len(n.keys), added, removed, len(o.origins), len(n.origins))
	if o.anonymous != n.anonymous {
		s += fmt.Sprintf(", anonymous origins %v", n.anonymous)
	}
	if o.perKey != n.perKey || o.perIP != n.perIP {
		s += ", rate limits changed"
	}
	if o.maxTTL != n.maxTTL {
		s += fmt.Sprintf(", max ttl %s", n.maxTTL)
	}
	return s
}
