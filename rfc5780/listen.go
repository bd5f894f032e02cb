package rfc5780

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// listenAttempts bounds the search for a free alternate port.
const listenAttempts = 20

// ListenAlternates opens the alternate sockets for the primary address
// A1:P1 = primary: A2:P1, A1:P2 and A2:P2 with A2 = altIP and P2 = altPort.
// altPort 0 picks a port that is free on both A1 and A2. The primary must be
// a specific address (RESPONSE-ORIGIN must be the address the client
// reached) of altIP's family.
func ListenAlternates(ctx context.Context, primary netip.AddrPort, altIP netip.Addr, altPort uint16) (Alternates, error) {
	a1, p1 := primary.Addr().Unmap(), primary.Port()
	altIP = altIP.Unmap()
	switch {
	case !a1.IsValid() || a1.IsUnspecified() || p1 == 0:
		return Alternates{}, fmt.Errorf("rfc5780: primary %s must be a specific address and port", primary)
	case a1.Is4() != altIP.Is4():
		return Alternates{}, fmt.Errorf("rfc5780: alternate IP %s and primary %s differ in family", altIP, a1)
	case a1 == altIP:
		return Alternates{}, fmt.Errorf("rfc5780: alternate IP %s equals the primary IP", altIP)
	case altPort == p1:
		return Alternates{}, fmt.Errorf("rfc5780: alternate port %d equals the primary port", altPort)
	}
	network := "udp6"
	if a1.Is4() {
		network = "udp4"
	}
	var lc net.ListenConfig
	listen := func(ip netip.Addr, port uint16) (net.PacketConn, error) {
		pc, err := lc.ListenPacket(ctx, network, netip.AddrPortFrom(ip, port).String())
		if err != nil {
			return nil, fmt.Errorf("rfc5780: alternate socket %s: %w", netip.AddrPortFrom(ip, port), err)
		}
		return pc, nil
	}
	var a Alternates
	var err error
	if a.IP, err = listen(altIP, p1); err != nil {
		return Alternates{}, err
	}
	for attempt := 0; ; attempt++ {
		if a.Port, err = listen(a1, altPort); err != nil {
			break
		}
		p2 := uint16(a.Port.LocalAddr().(*net.UDPAddr).Port)
		if a.Both, err = listen(altIP, p2); err == nil {
			return a, nil
		}
		_ = a.Port.Close()
		a.Port = nil
		if altPort != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt+1 == listenAttempts {
			break
		}
	}
	_ = a.Close()
	return Alternates{}, err
}
