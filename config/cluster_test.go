package config

import (
	"strings"
	"testing"
)

func TestValidateCluster(t *testing.T) {
	const pw = "s3cret-redis-pass"
	tests := []struct {
		name    string
		mutate  func(*Cluster)
		key     string // "" = valid
		message string
	}{
		{"off", func(*Cluster) {}, "", ""},
		{"redis", func(c *Cluster) { c.Redis = "redis://127.0.0.1:6379/0" }, "", ""},
		{"rediss with ACL user", func(c *Cluster) { c.Redis = "rediss://ferry:" + pw + "@redis.example.com:6380/2" }, "", ""},
		{"unix socket", func(c *Cluster) { c.Redis = "unix:///run/redis/redis.sock" }, "", ""},
		{"wrong scheme", func(c *Cluster) { c.Redis = "http://127.0.0.1:6379" }, "cluster.redis", "redis://, rediss://"},
		{"no host", func(c *Cluster) { c.Redis = "redis://" }, "cluster.redis", "names no host"},
		{"bare host", func(c *Cluster) { c.Redis = "127.0.0.1:6379" }, "cluster.redis", ""},
		{"wrong scheme keeps the password out", func(c *Cluster) { c.Redis = "http://u:" + pw + "@h:1" }, "cluster.redis", "<redacted>"},
		{"placement zero", func(c *Cluster) { c.PlacementCount = 0 }, "cluster.placement-count", "1 to 16"},
		{"placement too many", func(c *Cluster) { c.PlacementCount = 17 }, "cluster.placement-count", "1 to 16"},
		{"node id with a space", func(c *Cluster) { c.NodeID = "node one" }, "cluster.node-id", "white space"},
		{"prefix with a space", func(c *Cluster) { c.KeyPrefix = "ferry: " }, "cluster.key-prefix", "white space"},
		{"nonce secret", func(c *Cluster) { c.NonceSecret = "0123456789abcdef" }, "", ""},
		{"nonce secret too short", func(c *Cluster) { c.NonceSecret = "short" }, "cluster.nonce-secret", "16 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c.Cluster)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.key+": ") || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error %v does not name %s with %q", err, tt.key, tt.message)
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("error echoes the Redis password: %v", err)
			}
		})
	}
}

func TestClusterRedisRedacted(t *testing.T) {
	c := Default()
	c.Cluster.Redis = "rediss://ferry:s3cret-redis-pass@redis.example.com:6380/2"
	c.Cluster.NonceSecret = "nonce-secret-0123456789"
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{c.String(), string(y)} {
		if strings.Contains(s, "s3cret-redis-pass") || strings.Contains(s, "nonce-secret-0123456789") || !strings.Contains(s, "redis.example.com") || !strings.Contains(s, "redacted") {
			t.Fatalf("printed config leaks the Redis password or lost the URL:\n%s", s)
		}
	}
	if !c.Cluster.Enabled() || Default().Cluster.Enabled() {
		t.Fatal("Enabled: want on with cluster.redis, off by default")
	}
}
