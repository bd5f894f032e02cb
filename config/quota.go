package config

import (
	"fmt"
	"time"
)

// Quota caps what clients may hold. Zero means unlimited.
type Quota struct {
	// UserAllocations caps the live allocations of one user (a static
	// user, or the user part of a REST username); past it Allocate gets
	// 486 (Allocation Quota Reached).
	UserAllocations int `mapstructure:"user-allocations"`
	// TotalAllocations caps the live allocations of the server; past it
	// Allocate gets 508 (Insufficient Capacity). The relay port range caps
	// it anyway.
	TotalAllocations int `mapstructure:"total-allocations"`
	// Permissions and Channels cap the peer permissions and channel
	// bindings of one allocation; past them CreatePermission and
	// ChannelBind get 508.
	Permissions int `mapstructure:"permissions"`
	Channels    int `mapstructure:"channels"`
	// MaxLifetime caps the LIFETIME clients may ask for (1m to 1h).
	MaxLifetime time.Duration `mapstructure:"max-lifetime"`
	// AllocationBandwidth and UserBandwidth cap relayed bytes per second
	// of one allocation and of all of one user's allocations, each
	// direction separately.
	AllocationBandwidth int `mapstructure:"allocation-bandwidth"`
	UserBandwidth       int `mapstructure:"user-bandwidth"`
	// UserBytes caps the bytes one user relays per UserBytesPeriod (both
	// directions, every allocation, every node of a cluster); past it
	// the user's allocations are closed and Allocate gets 486 until the
	// next period.
	UserBytes       int           `mapstructure:"user-bytes"`
	UserBytesPeriod time.Duration `mapstructure:"user-bytes-period"`
}

// Limits are the abuse limits applied per client IP address before any
// request reaches the TURN server, and the nonce rules.
type Limits struct {
	// AllocateRate and AllocateBurst limit, per client IP (IPv6: per /64),
	// the UDP requests ferry answers before a credential is checked (the
	// 401 and 438 challenges, and errors to requests without a valid
	// nonce): per minute on average, at once. Excess is dropped. Requests
	// with a valid nonce, and connections (TCP, TLS, DTLS), whose address
	// the handshake proves, are not limited.
	AllocateRate  int `mapstructure:"allocate-rate"`
	AllocateBurst int `mapstructure:"allocate-burst"`
	// AuthFailureRate and AuthFailureBurst limit refused credentials of one
	// user name from one client IP (per minute, at once); past them that
	// user name's requests from that IP get 401 without a check until the
	// bucket refills. Other users behind the same IP and the same user
	// elsewhere are not affected, and only requests with a valid nonce
	// (sent to their source) count.
	AuthFailureRate  int `mapstructure:"auth-failure-rate"`
	AuthFailureBurst int `mapstructure:"auth-failure-burst"`
	// TrackedIPs is how many client IPs each limit remembers.
	TrackedIPs int `mapstructure:"tracked-ips"`
	// NonceLifetime is how long a nonce is accepted (1m to 1h); older
	// nonces get 438 (Stale Nonce).
	NonceLifetime time.Duration `mapstructure:"nonce-lifetime"`
	// BindNonces makes a nonce valid only from the transport address (IP
	// and port) it was sent to.
	BindNonces bool `mapstructure:"bind-nonces"`
}

// defaultQuota and defaultLimits are the embedded defaults.
func defaultQuota() Quota {
	return Quota{UserAllocations: 64, Permissions: 128, Channels: 128, MaxLifetime: time.Hour, UserBytesPeriod: 24 * time.Hour}
}

func defaultLimits() Limits {
	return Limits{
		AllocateRate: 600, AllocateBurst: 100,
		AuthFailureRate: 60, AuthFailureBurst: 20,
		TrackedIPs:    1 << 16,
		NonceLifetime: 10 * time.Minute,
		BindNonces:    true,
	}
}

// validateQuota checks quota.* and limits.*.
func (c *Config) validateQuota(add func(string, error)) {
	const maxCount = 1_000_000
	for _, v := range []struct {
		key string
		n   int
	}{
		{"quota.user-allocations", c.Quota.UserAllocations},
		{"quota.total-allocations", c.Quota.TotalAllocations},
		{"quota.permissions", c.Quota.Permissions},
		{"quota.channels", c.Quota.Channels},
		{"limits.allocate-rate", c.Limits.AllocateRate},
		{"limits.auth-failure-rate", c.Limits.AuthFailureRate},
	} {
		if v.n < 0 || v.n > maxCount {
			add(v.key, fmt.Errorf("%d is out of range; use 0 (unlimited) to %d", v.n, maxCount))
		}
	}
	if c.Quota.Channels > 0x1000 {
		add("quota.channels", fmt.Errorf("%d is more than the 4096 channel numbers RFC 8656 has; use 0 (unlimited) to 4096", c.Quota.Channels))
	}
	for _, v := range []struct {
		key  string
		rate int
		n    int
	}{
		{"limits.allocate-burst", c.Limits.AllocateRate, c.Limits.AllocateBurst},
		{"limits.auth-failure-burst", c.Limits.AuthFailureRate, c.Limits.AuthFailureBurst},
	} {
		if v.n < 0 || v.n > maxCount || v.rate > 0 && v.n == 0 {
			add(v.key, fmt.Errorf("%d is out of range; use 1 to %d (the rate's burst)", v.n, maxCount))
		}
	}
	for _, v := range []struct {
		key string
		n   int
	}{
		{"quota.allocation-bandwidth", c.Quota.AllocationBandwidth},
		{"quota.user-bandwidth", c.Quota.UserBandwidth},
	} {
		if v.n < 0 || v.n > 0 && v.n < 1000 {
			add(v.key, fmt.Errorf("%d bytes/s is out of range; use 0 (unlimited) or at least 1000 (e.g. 250000 for 2 Mbit/s)", v.n))
		}
	}
	if n := c.Quota.UserBytes; n < 0 || n > 0 && n < 1_000_000 {
		add("quota.user-bytes", fmt.Errorf("%d bytes is out of range; use 0 (unlimited) or at least 1000000 (e.g. 10000000000 for 10 GB)", n))
	}
	if d := c.Quota.UserBytesPeriod; d < time.Minute || d > 744*time.Hour || d%time.Minute != 0 {
		add("quota.user-bytes-period", fmt.Errorf("%s is out of range; use whole minutes from 1m to 744h (31 days)", d))
	}
	if c.Limits.TrackedIPs < 1 || c.Limits.TrackedIPs > 1<<24 {
		add("limits.tracked-ips", fmt.Errorf("%d is out of range; use 1 to 16777216", c.Limits.TrackedIPs))
	}
	if d := c.Quota.MaxLifetime; d < time.Minute || d > time.Hour || d%time.Second != 0 {
		add("quota.max-lifetime", fmt.Errorf("%s is out of range; use whole seconds from 1m to 1h", d))
	} else if c.Relay.AllocationLifetime > d {
		add("quota.max-lifetime", fmt.Errorf("%s is below relay.allocation-lifetime %s; raise it or lower the default lifetime", d, c.Relay.AllocationLifetime))
	}
	if d := c.Limits.NonceLifetime; d < time.Minute || d > time.Hour {
		add("limits.nonce-lifetime", fmt.Errorf("%s is out of range; use 1m to 1h", d))
	}
}
