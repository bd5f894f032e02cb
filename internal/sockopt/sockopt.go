// Package sockopt owns the socket options ferry sets on the sockets it
// opens, client-facing (package listen) and relay (package relay) alike, as
// net.ListenConfig/net.Dialer Control functions.
package sockopt

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// ReuseAddrPort sets SO_REUSEADDR and SO_REUSEPORT: several client-facing
// UDP sockets share one address (the kernel spreads clients over them), and
// an RFC 6062 Connect can dial from the port its TCP relay listens on.
func ReuseAddrPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// ReuseAddr sets SO_REUSEADDR only: a TCP listener can bind again while
// connections of a previous process linger in TIME_WAIT, but a second
// process cannot bind the same port (SO_REUSEPORT would let it, and take
// half of the connections).
func ReuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
