package dataplane

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/relay"
)

// Defaults of the engine settings that have no configuration key.
const (
	connectionIdle          = 30 * time.Second
	maxIdleConnections      = 4096
	maxIdleConnectionsPerIP = 64
)

// OptionsFrom derives the server's options from a validated configuration:
// relay4 and relay6 are the relay bind addresses (configured or detected;
// invalid turns a family off), self ferry's own addresses (listeners and
// interfaces), which relays may not reach.
func OptionsFrom(cfg config.Config, relay4, relay6 netip.Addr, self []netip.Addr) (Options, error) {
	ext4, ext6, err := cfg.Relay.ExternalIPs()
	if err != nil {
		return Options{}, fmt.Errorf("relay.external-ip: %w", err)
	}
	lo, hi, err := cfg.Relay.PortRange()
	if err != nil {
		return Options{}, fmt.Errorf("relay.ports: %w", err)
	}
	pol, err := Policy(cfg, relay4, relay6, self)
	if err != nil {
		return Options{}, err
	}
	trusted, err := cfg.ProxyProtocol.TrustedProxies()
	if err != nil {
		return Options{}, fmt.Errorf("proxy-protocol.trusted: %w", err)
	}
	q, lim := cfg.Quota, cfg.Limits
	return Options{
		Engine: engine.Config{
			Realm:                   cfg.Realm,
			Software:                cfg.Software,
			DefaultLifetime:         cfg.Relay.AllocationLifetime,
			MaxLifetime:             q.MaxLifetime,
			NonceLifetime:           lim.NonceLifetime,
			BindNonces:              lim.BindNonces,
			External4:               ext4,
			External6:               ext6,
			RelayMinPort:            lo,
			RelayMax:                hi,
			UserAllocations:         q.UserAllocations,
			TotalAllocations:        q.TotalAllocations,
			Permissions:             q.Permissions,
			Channels:                q.Channels,
			AllocationBandwidth:     int64(q.AllocationBandwidth),
			UserBandwidth:           int64(q.UserBandwidth),
			UnauthenticatedRate:     lim.AllocateRate,
			UnauthenticatedBurst:    lim.AllocateBurst,
			AuthFailureRate:         lim.AuthFailureRate,
			AuthFailureBurst:        lim.AuthFailureBurst,
			TrackedIPs:              lim.TrackedIPs,
			ConnectionIdle:          connectionIdle,
			MaxIdleConnections:      maxIdleConnections,
			MaxIdleConnectionsPerIP: maxIdleConnectionsPerIP,
		},
		Policy:       pol,
		RelayV4:      relay4,
		RelayV6:      relay6,
		ProxyTrusted: trusted,
	}, nil
}

// Policy builds the peer policy of cfg: ferry's own addresses (self, the
// relay bind and advertised addresses) are refused, except the relay
// addresses on relay ports.
func Policy(cfg config.Config, relay4, relay6 netip.Addr, self []netip.Addr) (*relay.Policy, error) {
	allowed, err := config.ParsePrefixes(cfg.Relay.AllowedPeers)
	if err != nil {
		return nil, fmt.Errorf("relay.allowed-peers: %w", err)
	}
	denied, err := config.ParsePrefixes(cfg.Relay.DeniedPeers)
	if err != nil {
		return nil, fmt.Errorf("relay.denied-peers: %w", err)
	}
	ext4, ext6, err := cfg.Relay.ExternalIPs()
	if err != nil {
		return nil, fmt.Errorf("relay.external-ip: %w", err)
	}
	lo, hi, err := cfg.Relay.PortRange()
	if err != nil {
		return nil, fmt.Errorf("relay.ports: %w", err)
	}
	all := append([]netip.Addr(nil), self...)
	var relays []netip.Addr
	for _, a := range []netip.Addr{relay4, relay6, ext4, ext6} {
		if a.IsValid() {
			all = append(all, a)
			if !a.IsUnspecified() {
				relays = append(relays, a)
			}
		}
	}
	p, err := relay.NewPolicy(relay.PolicyOptions{
		AllowLoopback: cfg.Relay.AllowLoopbackPeers,
		Allowed:       allowed,
		Denied:        denied,
		Self:          all,
		Relays:        relays,
		RelayMinPort:  lo,
		RelayMaxPort:  hi,
	})
	if err != nil {
		return nil, fmt.Errorf("peer policy: %w", err)
	}
	return p, nil
}
