package creds

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
)

// ICEServer is one entry of RTCConfiguration.iceServers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Credential is a minted TURN REST credential with its iceServers list.
type Credential struct {
	Username   string      `json:"username"`
	Credential string      `json:"credential"`
	TTL        int64       `json:"ttl"`
	ExpiresAt  time.Time   `json:"expires_at"`
	ICEServers []ICEServer `json:"iceServers"`
}

// URLs builds the stun:/turn:/turns: URLs clients use to reach the
// listeners at host. host is a DNS name or an IP address (IPv6 is
// bracketed). Wildcard listeners are reached at host; listeners bound to a
// specific address are reached there unless host is given explicitly, in
// which case every listener is assumed reachable at host on its port.
func URLs(host string, listeners []config.Listener) (stun []string, turn []string) {
	seen := map[string]bool{}
	add := func(list *[]string, u string) {
		if !seen[u] {
			seen[u] = true
			*list = append(*list, u)
		}
	}
	for _, l := range listeners {
		h := host
		if h == "" {
			h = hostOf(l.Addr.Addr())
		} else if ip, err := netip.ParseAddr(h); err == nil {
			h = hostOf(ip)
		}
		port := strconv.Itoa(int(l.Addr.Port()))
		switch l.Transport {
		case config.UDP:
			add(&stun, "stun:"+h+":"+port)
			add(&turn, "turn:"+h+":"+port+"?transport=udp")
		case config.TCP:
			add(&turn, "turn:"+h+":"+port+"?transport=tcp")
		case config.TLSt:
			add(&turn, "turns:"+h+":"+port+"?transport=tcp")
		case config.DTLS:
			// Browsers do not speak TURN over DTLS; it is for native clients.
		}
	}
	sort.SliceStable(turn, func(i, j int) bool { return rank(turn[i]) < rank(turn[j]) })
	return stun, turn
}

// rank orders TURN URLs as browsers should try them: UDP, TCP, TLS.
func rank(u string) int {
	switch {
	case len(u) > 6 && u[:6] == "turns:":
		return 2
	case len(u) > 4 && u[len(u)-4:] == "=tcp":
		return 1
	}
	return 0
}

func hostOf(ip netip.Addr) string {
	if ip.Is6() && !ip.Is4In6() {
		return "[" + ip.String() + "]"
	}
	return ip.Unmap().String()
}

// Target is a node clients may use: its listeners, reached at Host (see
// URLs).
type Target struct {
	Host      string
	Listeners []config.Listener
}

// ICEServers returns the iceServers list for a credential valid on every
// target (nodes of one cluster share auth.secrets), in the targets' order:
// one entry with every STUN URL, one with every TURN URL.
func ICEServers(targets []Target, username, password string) []ICEServer {
	var stun, turn []string
	for _, t := range targets {
		s, u := URLs(t.Host, t.Listeners)
		stun = append(stun, s...)
		turn = append(turn, u...)
	}
	var out []ICEServer
	if len(stun) > 0 {
		out = append(out, ICEServer{URLs: stun})
	}
	if len(turn) > 0 {
		out = append(out, ICEServer{URLs: turn, Username: username, Credential: password})
	}
	return out
}

// Mint signs a credential for user with the snapshot's first secret, with ttl
// capped at maxTTL, and builds its iceServers list naming targets.
func Mint(s *auth.Snapshot, user string, ttl, maxTTL time.Duration, now time.Time, targets []Target) (Credential, error) {
	if ttl <= 0 {
		return Credential{}, fmt.Errorf("ttl %s must be positive", ttl)
	}
	if maxTTL > 0 && ttl > maxTTL {
		ttl = maxTTL
	}
	ttl = ttl.Truncate(time.Second)
	if ttl < time.Second {
		ttl = time.Second
	}
	u, p, err := s.Mint(user, ttl, now)
	if err != nil {
		return Credential{}, err
	}
	return Credential{
		Username:   u,
		Credential: p,
		TTL:        int64(ttl / time.Second),
		ExpiresAt:  now.Add(ttl).UTC().Truncate(time.Second),
		ICEServers: ICEServers(targets, u, p),
	}, nil
}
