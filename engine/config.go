package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Protocol timers (RFC 8656 §2.2, §9, §12; RFC 6062 §5.2).
const (
	PermissionLifetime = 5 * time.Minute
	ChannelLifetime    = 10 * time.Minute
	// ReservationLifetime is how long a RESERVATION-TOKEN holds its port.
	ReservationLifetime = 30 * time.Second
	// ConnectionBindTimeout is how long a peer TCP connection waits for the
	// client's ConnectionBind.
	ConnectionBindTimeout = 30 * time.Second
	// channelRebindGuard: a channel number cannot be bound to another peer
	// for 5 minutes after it expires (RFC 8656 §12); ferry simply keeps
	// expired bindings this long before reusing their number.
	channelRebindGuard = 5 * time.Minute
)

// Config is what every shard of an engine is built with. It is read, never
// changed, after New.
type Config struct {
	// Realm is the long-term credential realm.
	Realm string
	// Software, if not empty, is sent in SOFTWARE on Binding and Allocate
	// success responses.
	Software string

	// DefaultLifetime is the allocation lifetime without LIFETIME, and the
	// least a client gets; MaxLifetime caps LIFETIME.
	DefaultLifetime, MaxLifetime time.Duration
	// NonceLifetime is how long a nonce is accepted.
	NonceLifetime time.Duration
	// BindNonces ties each nonce to the transport, IP address and port it
	// was sent to.
	BindNonces bool

	// Relay families offered (relay.ip resolved per family) and the
	// addresses advertised for them when ferry sits behind a 1:1 NAT
	// (relay.external-ip); an invalid advertised address means: the bound
	// address.
	RelayV4, RelayV6       bool
	External4, External6   netip.Addr
	RelayMinPort, RelayMax uint16

	// Quotas; zero is unlimited.
	UserAllocations, TotalAllocations int
	Permissions, Channels             int
	// AllocationBandwidth and UserBandwidth cap relayed bytes per second in
	// each direction.
	AllocationBandwidth, UserBandwidth int64

	// UnauthenticatedRate and UnauthenticatedBurst bound, per client IP
	// address (IPv6: /64), the UDP requests answered before any credential
	// is checked (challenges and errors to requests without a valid
	// nonce): per minute, at once. Excess is dropped.
	UnauthenticatedRate, UnauthenticatedBurst int
	// AuthFailureRate and AuthFailureBurst bound the refused credentials of
	// one user name from one client address (per minute, at once); past
	// them, that user name's requests from that address get 401 without a
	// check until the bucket refills.
	AuthFailureRate, AuthFailureBurst int
	// TrackedIPs is the number of slots of each per-address table.
	TrackedIPs int

	// Connections bound the client connections (TCP, TLS, DTLS) that hold
	// no allocation: each is closed ConnectionIdle after it opened or its
	// allocation ended, and beyond MaxIdleConnections per shard or
	// MaxIdleConnectionsPerIP per client address new ones are refused.
	ConnectionIdle          time.Duration
	MaxIdleConnections      int
	MaxIdleConnectionsPerIP int

	// NAT lists the RFC 5780 address sets, one per primary UDP listener
	// address.
	NAT []NATAddresses

	// Shards is the number of engines sharing one Shared.
	Shards int

	// Offload lets the engine hand channel-bound UDP traffic to the data
	// plane's kernel fast path (see OffloadChannel).
	Offload bool

	// Log receives allocation lifecycle lines at info and the lines
	// clients cause, bounded per kind (see ClientLogBurst).
	Log *slog.Logger
}

// NATAddresses is one primary UDP listener's RFC 5780 set: the addresses
// A1:P1 (primary), A2:P1, A1:P2 and A2:P2 and the data plane sockets that
// answer from each.
type NATAddresses struct {
	Addr   [4]netip.AddrPort
	Socket [4]SocketID
}

// ClientLogBurst and ClientLogsPerMinute bound the log lines clients can
// cause, per kind (refused credentials, denied peers, relay sockets not
// bound) and process: a burst of lines, then a few a minute, so that a
// flood of bad requests cannot fill the log. Lines left out are counted;
// every ClientLogSummaryEvery at most, while any were, one "similar lines
// suppressed" line says how many.
const (
	ClientLogBurst        = 10
	ClientLogsPerMinute   = 6
	ClientLogSummaryEvery = time.Minute
)

// check validates c.
func (c *Config) check() error {
	var errs []error
	if c.Realm == "" {
		errs = append(errs, errors.New("engine: realm is empty"))
	}
	if c.DefaultLifetime <= 0 || c.MaxLifetime < c.DefaultLifetime {
		errs = append(errs, fmt.Errorf("engine: lifetimes default %s max %s", c.DefaultLifetime, c.MaxLifetime))
	}
	if c.NonceLifetime < time.Second {
		errs = append(errs, fmt.Errorf("engine: nonce lifetime %s", c.NonceLifetime))
	}
	if c.Shards < 1 || c.Shards > 255 {
		errs = append(errs, fmt.Errorf("engine: %d shards (1 to 255)", c.Shards))
	}
	if c.RelayMinPort > c.RelayMax {
		errs = append(errs, fmt.Errorf("engine: relay ports %d-%d", c.RelayMinPort, c.RelayMax))
	}
	for _, n := range c.NAT {
		for _, a := range n.Addr {
			if !a.IsValid() {
				return fmt.Errorf("engine: RFC 5780 address set %v has an invalid address", n.Addr)
			}
		}
	}
	return errors.Join(errs...)
}
