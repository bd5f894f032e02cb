package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Cluster joins nodes through a shared Redis: a registry of nodes and
// their load, placement of new calls on the least-loaded nodes, and
// redirection away from draining ones. Off when Redis is unset: a single
// node needs no Redis.
type Cluster struct {
	// Redis is the store's URL: redis://[user:password@]host:port/db or
	// rediss:// for TLS. Secret (its password): redacted when printed.
	Redis string `mapstructure:"redis"`
	// KeyPrefix starts every key ferry writes, so that several clusters
	// (or other programs) can share one Redis.
	KeyPrefix string `mapstructure:"key-prefix"`
	// NodeID names this node in the cluster; empty: the host name.
	NodeID string `mapstructure:"node-id"`
	// Region is this node's region, matched against a caller's region in
	// placement.
	Region string `mapstructure:"region"`
	// PublicHost is the host name or address clients reach this node at,
	// in the iceServers other nodes hand out; empty: public-host, else the
	// advertised relay address.
	PublicHost string `mapstructure:"public-host"`
	// PlacementCount is how many nodes an iceServers answer names.
	PlacementCount int `mapstructure:"placement-count"`
	// NonceSecret, shared by every node, makes one node's nonces valid on
	// the others, so that a client sent elsewhere (300 Try Alternate) or
	// whose retry lands on another node needs no new challenge. Secret:
	// redacted when printed.
	NonceSecret string `mapstructure:"nonce-secret"`
}

// Usage configures usage records: one per allocation when it ends, and
// every Interval while it lives, to the cluster's Redis Stream and/or a
// JSON-lines file.
type Usage struct {
	// File is a JSON-lines file records are appended to (a node without
	// Redis); empty: none.
	File string `mapstructure:"file"`
	// Interval is how often a live allocation's record is written.
	Interval time.Duration `mapstructure:"interval"`
	// StreamMaxLen trims the Redis Stream to about this many records.
	StreamMaxLen int `mapstructure:"stream-max-len"`
}

func defaultUsage() Usage { return Usage{Interval: time.Minute, StreamMaxLen: 1_000_000} }

// validateUsage checks the usage keys.
func (c *Config) validateUsage(add func(string, error)) {
	if c.Usage.Interval < 10*time.Second || c.Usage.Interval > time.Hour {
		add("usage.interval", fmt.Errorf("%s is out of range; use 10s to 1h", c.Usage.Interval))
	}
	if c.Usage.StreamMaxLen < 1000 {
		add("usage.stream-max-len", fmt.Errorf("%d is too small; keep at least 1000 records", c.Usage.StreamMaxLen))
	}
}

// Enabled reports whether the node joins a cluster.
func (c Cluster) Enabled() bool { return c.Redis != "" }

func defaultCluster() Cluster {
	return Cluster{KeyPrefix: "ferry:", PlacementCount: 2}
}

// RedisURL parses cluster.redis: redis://, rediss:// or unix://.
func (c *Cluster) RedisURL() (*url.URL, error) {
	u, err := url.Parse(c.Redis)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %w", redactURL(c.Redis), err)
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return nil, fmt.Errorf("%q names no host; e.g. redis://127.0.0.1:6379/0", redactURL(c.Redis))
		}
	case "unix":
		if u.Path == "" {
			return nil, fmt.Errorf("%q names no socket path; e.g. unix:///run/redis/redis.sock", redactURL(c.Redis))
		}
	default:
		return nil, fmt.Errorf("%q: scheme %q; use redis://, rediss:// (TLS) or unix://", redactURL(c.Redis), u.Scheme)
	}
	return u, nil
}

// validateCluster checks the cluster keys.
func (c *Config) validateCluster(add func(string, error)) {
	cl := &c.Cluster
	if cl.PlacementCount < 1 || cl.PlacementCount > 16 {
		add("cluster.placement-count", fmt.Errorf("%d is out of range; use 1 to 16", cl.PlacementCount))
	}
	if strings.ContainsAny(cl.KeyPrefix, " \t\r\n") {
		add("cluster.key-prefix", errors.New("must not contain white space"))
	}
	if strings.ContainsAny(cl.NodeID, " \t\r\n") || len(cl.NodeID) > 128 {
		add("cluster.node-id", fmt.Errorf("%q: use up to 128 characters without white space, e.g. the host name", cl.NodeID))
	}
	if cl.NonceSecret != "" && len(cl.NonceSecret) < 16 {
		add("cluster.nonce-secret", errors.New("is shorter than 16 characters; make one with: openssl rand -base64 24"))
	}
	if !cl.Enabled() {
		return
	}
	if _, err := cl.RedisURL(); err != nil {
		add("cluster.redis", err)
	}
}

// redactURL hides the password of a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if err != nil && strings.Contains(s, "@") {
			return redacted
		}
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
		return strings.Replace(u.String(), "xxxxx", redacted, 1)
	}
	return s
}
