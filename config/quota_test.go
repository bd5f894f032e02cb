package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestValidateQuotaAndLimits(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		key  string // "" = valid
		msg  string
	}{
		{name: "defaults", edit: func(*Config) {}},
		{name: "all unlimited", edit: func(c *Config) {
			c.Quota = Quota{MaxLifetime: time.Hour, UserBytesPeriod: time.Hour}
			c.Limits = Limits{TrackedIPs: 1, NonceLifetime: time.Hour}
		}},
		{name: "negative user quota", edit: func(c *Config) { c.Quota.UserAllocations = -1 }, key: "quota.user-allocations", msg: "out of range"},
		{name: "negative total", edit: func(c *Config) { c.Quota.TotalAllocations = -1 }, key: "quota.total-allocations"},
		{name: "negative permissions", edit: func(c *Config) { c.Quota.Permissions = -2 }, key: "quota.permissions"},
		{name: "too many channels", edit: func(c *Config) { c.Quota.Channels = 5000 }, key: "quota.channels", msg: "4096"},
		{name: "lifetime too short", edit: func(c *Config) { c.Quota.MaxLifetime = 30 * time.Second }, key: "quota.max-lifetime", msg: "1m to 1h"},
		{name: "lifetime too long", edit: func(c *Config) { c.Quota.MaxLifetime = 2 * time.Hour }, key: "quota.max-lifetime"},
		{name: "lifetime below default", edit: func(c *Config) { c.Quota.MaxLifetime = 5 * time.Minute }, key: "quota.max-lifetime", msg: "allocation-lifetime"},
		{name: "tiny bandwidth", edit: func(c *Config) { c.Quota.AllocationBandwidth = 10 }, key: "quota.allocation-bandwidth", msg: "at least 1000"},
		{name: "negative user bandwidth", edit: func(c *Config) { c.Quota.UserBandwidth = -1 }, key: "quota.user-bandwidth"},
		{name: "tiny byte budget", edit: func(c *Config) { c.Quota.UserBytes = 5000 }, key: "quota.user-bytes", msg: "at least 1000000"},
		{name: "byte budget period of seconds", edit: func(c *Config) { c.Quota.UserBytesPeriod = 90 * time.Second }, key: "quota.user-bytes-period", msg: "whole minutes"},
		{name: "byte budget period too long", edit: func(c *Config) { c.Quota.UserBytesPeriod = 800 * time.Hour }, key: "quota.user-bytes-period", msg: "744h"},
		{name: "negative rate", edit: func(c *Config) { c.Limits.AllocateRate = -1 }, key: "limits.allocate-rate"},
		{name: "rate without burst", edit: func(c *Config) { c.Limits.AllocateBurst = 0 }, key: "limits.allocate-burst", msg: "1 to"},
		{name: "failure rate without burst", edit: func(c *Config) { c.Limits.AuthFailureBurst = 0 }, key: "limits.auth-failure-burst"},
		{name: "no tracked ips", edit: func(c *Config) { c.Limits.TrackedIPs = 0 }, key: "limits.tracked-ips"},
		{name: "nonce lifetime too long", edit: func(c *Config) { c.Limits.NonceLifetime = 2 * time.Hour }, key: "limits.nonce-lifetime", msg: "1h"},
		{name: "nonce lifetime too short", edit: func(c *Config) { c.Limits.NonceLifetime = time.Second }, key: "limits.nonce-lifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if got := KeyOf(err); got != tt.key {
				t.Fatalf("error names %q, want %q: %v", got, tt.key, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

// TestQuotaFromFileEnvFlags sets quota.* and limits.* from each source.
func TestQuotaFromFileEnvFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.yaml")
	if err := os.WriteFile(path, []byte("quota:\n  user-allocations: 5\n  max-lifetime: 20m\nlimits:\n  bind-nonces: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := newFlags(t)
	if err := fs.Parse([]string{"--quota-allocation-bandwidth", "250000", "--limits-nonce-lifetime", "5m", "--quota-user-bytes", "5000000000"}); err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(path, fs, []string{"FERRY_LIMITS_ALLOCATE_RATE=120", "FERRY_QUOTA_CHANNELS=16", "FERRY_QUOTA_USER_BYTES_PERIOD=1h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Quota{UserAllocations: 5, Permissions: 128, Channels: 16, MaxLifetime: 20 * time.Minute, AllocationBandwidth: 250000,
		UserBytes: 5_000_000_000, UserBytesPeriod: time.Hour}
	if c.Quota != want {
		t.Errorf("quota %+v, want %+v", c.Quota, want)
	}
	if c.Limits.BindNonces || c.Limits.AllocateRate != 120 || c.Limits.NonceLifetime != 5*time.Minute {
		t.Errorf("limits %+v", c.Limits)
	}
}
