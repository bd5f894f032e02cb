//go:build !linux

package netwatch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
)

// Addrs returns every unicast address configured on interfaces that are
// up: IPv4 and IPv6, link-local and loopback included, IPv4-mapped IPv6
// addresses unmapped, without zones, sorted and deduplicated. The list is
// never nil when the error is nil. Outside Linux it reads them with
// net.Interfaces.
func Addrs() ([]netip.Addr, error) { return interfaceAddrs() }

// Watch would call onChange with the address list whenever it changes;
// outside Linux it returns an error wrapping errors.ErrUnsupported at once.
func Watch(ctx context.Context, o Options, onChange func([]netip.Addr)) error {
	return fmt.Errorf("netwatch: watching addresses is unsupported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
