package dataplane

import (
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/engine"
	"github.com/ferryrtc/ferry/listen"
)

// SocketsFrom turns an opened listen.Set (and RFC 5780 alternates) into the
// server's Sockets.
func SocketsFrom(set listen.Set, nat []NATSockets) Sockets {
	s := Sockets{UDP: set.UDP, NAT: nat}
	for _, st := range set.Stream {
		t := engine.TCP
		switch st.Transport {
		case config.TLSt:
			t = engine.TLS
		case config.DTLS:
			t = engine.DTLS
		}
		s.Stream = append(s.Stream, StreamListener{Listener: st.Listener, Transport: t, ProxyProtocol: st.ProxyProtocol, TLS: st.TLS})
	}
	return s
}
