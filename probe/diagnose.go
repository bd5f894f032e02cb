package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// Step names of the TURN probe, as reported.
const (
	stepChallenge  = "challenge"
	stepAllocate   = "allocate"
	stepPermission = "permission"
	stepRelay      = "relay round trip"
	stepChannel    = "channel round trip"
	stepRelease    = "release"
	stepBinding    = "binding" // the STUN probe's first test
)

// failure is what diagnose knows about a failed probe.
type failure struct {
	// step is the step that failed; "" before the first (resolving the
	// server, opening a socket).
	step string
	err  error
	// rest is true when the credential was minted from a REST secret.
	rest bool
	// user is the user name the probe allocated as.
	user   string
	server netip.AddrPort
	// peer is the address of the round trip's peer, once known; selfPeer
	// is true when it is the probe's own second socket.
	peer     netip.Addr
	selfPeer bool
	// relayed is the allocation's relayed address, once allocated.
	relayed netip.AddrPort
}

// Phrases diagnose starts its causes with, for the cases people search
// for.
const (
	causePeerPolicy = "peer refused by the server's peer policy (relay.allowed-peers / relay.allow-loopback-peers)"
	causeDraining   = "server is draining (shutting down or upgrading)"
	causeCapacity   = "no free relay port / capacity"
	causeQuota      = "allocation quota reached"
	causeNoAnswer   = "no answer"
)

// diagnose says why a probe failed, naming the server setting involved
// where there is one, and what to do about it.
func diagnose(f failure) (cause, fix string) {
	if f.err == nil {
		return "", ""
	}
	if errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded) {
		return "the probe was interrupted", ""
	}
	var dnsErr *net.DNSError
	if errors.As(f.err, &dnsErr) {
		return fmt.Sprintf("the server's name %s does not resolve: %v", dnsErr.Name, dnsErr.Err),
			"check the host name in the URL, or give the server's IP address"
	}
	var er *ErrorResponse
	if errors.As(f.err, &er) {
		return diagnoseError(f, er)
	}
	if errors.Is(f.err, ErrTimeout) {
		return diagnoseTimeout(f)
	}
	if errors.Is(f.err, syscall.ENETUNREACH) || errors.Is(f.err, syscall.EHOSTUNREACH) {
		return fmt.Sprintf("this host has no route to %s", f.server),
			"check this host's network connection; an IPv6 server needs IPv6 here too"
	}
	return f.err.Error(), ""
}

// diagnoseError explains an error response.
func diagnoseError(f failure, er *ErrorResponse) (cause, fix string) {
	switch er.Code {
	case 300:
		return "the server sends new allocations to another node (300 Try Alternate): it is draining or full",
			"probe the other servers of the cluster; this one takes no new allocations"
	case 400:
		return fmt.Sprintf("the server found the %s request malformed (%s)", er.Method, er),
			"probe with ferry's own release; if the server is not ferry, compare with its documentation"
	case 401:
		if f.rest {
			return "wrong credentials: the server refused the credential minted from --secret: the secret is not one of its auth.secrets, " +
					"or the clocks of this host and the server differ by more than the credential's lifetime (" + restTTL.String() + "), so it sees it as expired",
				"check --secret against the server's auth.secrets, and both clocks (timedatectl, chronyc tracking); " +
					"`ferry creds` on the server mints a credential with its own clock"
		}
		return "wrong credentials: the server refused the user name or password",
			"check --user and --password against the server's auth.users (or the credential your API minted, which may have expired); " +
				"--realm, if given, must be the server's realm"
	case 403:
		return policyCause(f), policyFix(f)
	case 437:
		return "allocation mismatch: the server already has an allocation from this address and port",
			"wait for it to expire (relay.allocation-lifetime) or probe again: each probe uses a new port"
	case 438:
		return "stale nonce: the server kept refusing the nonce it had just handed out",
			"the server binds nonces to the client's address and port (limits.bind-nonces): a NAT that changes this host's port " +
				"between requests breaks that; servers behind one address must share cluster.nonce-secret"
	case 440:
		return "the server offers no relay of this address family",
			"probe the server over the other family, or give it a relay address of this one (relay.ip)"
	case 442:
		return "the server does not relay UDP", "probe another server"
	case 486:
		return fmt.Sprintf("%s for user %q: it has quota.user-allocations allocations already, or its byte budget (quota.user-bytes) for the period is spent", causeQuota, quotaUser(f.user)),
			"close the user's other allocations or wait for them to expire, probe as another user, or raise quota.user-allocations / quota.user-bytes on the server"
	case 508:
		if strings.Contains(strings.ToLower(er.Reason), "drain") {
			return causeDraining + ": it refuses new allocations while its clients finish (508 " + er.Reason + ")",
				"try another server"
		}
		switch f.step {
		case stepPermission:
			return "the allocation's permission quota is reached (quota.permissions)", "raise quota.permissions on the server"
		case stepChannel:
			return "the allocation's channel quota is reached (quota.channels)", "raise quota.channels on the server"
		}
		return causeCapacity + ": the server could not open a relay socket (its relay.ports are all in use, or relay.ip is not an address it has) " +
				"or it holds quota.total-allocations allocations (508 " + er.Reason + ")",
			"on the server: look for \"relay socket not bound\" in its log, widen relay.ports or raise quota.total-allocations, or add servers"
	}
	return er.Error(), ""
}

// diagnoseTimeout explains silence.
func diagnoseTimeout(f failure) (cause, fix string) {
	switch f.step {
	case "", stepChallenge, stepBinding:
		return fmt.Sprintf("%s from %s over UDP: nothing listens there, or a firewall drops UDP to port %d", causeNoAnswer, f.server, f.server.Port()),
			fmt.Sprintf("check that the server runs and listens on udp://%s (ferry logs \"ferry ready\" with its listeners), "+
				"and that UDP port %d is open in the firewalls and cloud security groups between here and there", f.server, f.server.Port())
	case stepRelay, stepChannel:
		if class := addrClass(f.peer); class != "" {
			return fmt.Sprintf("%s: the relayed data never arrived; the peer %s is a %s address, which ferry's default policy refuses", causePeerPolicy, f.peer, class),
				policyFix(f)
		}
		if class := addrClass(f.relayed.Addr()); class != "" && addrClass(f.server.Addr()) == "" {
			return fmt.Sprintf("the server advertises the relay address %s, a %s address that clients outside its network cannot reach", f.relayed, class),
				"set relay.external-ip on the server to its public address"
		}
		fix = fmt.Sprintf("open the relay port range (relay.ports) to UDP in the server's firewall and cloud security group; the relay is %s", f.relayed)
		if !f.selfPeer {
			fix += fmt.Sprintf("; check that the peer %s echoes and admits UDP from the relay", f.peer)
		}
		return "relayed data did not come back: a firewall drops UDP to the server's relay ports, or the peer did not answer", fix
	}
	return fmt.Sprintf("%s to the %s request: the server answered before, then stopped", causeNoAnswer, f.step),
		"retry in a minute (the server drops clients that send too much: limits.allocate-rate, limits.auth-failure-rate) and check the server's log"
}

// policyCause is the cause of a peer refused by the server's policy.
func policyCause(f failure) string {
	if class := addrClass(f.peer); class != "" {
		return fmt.Sprintf("%s: the peer %s is a %s address, which ferry's default policy refuses", causePeerPolicy, f.peer, class)
	}
	if f.peer.IsValid() {
		return fmt.Sprintf("%s: the server refuses the peer %s (relay.denied-peers, or one of its own addresses)", causePeerPolicy, f.peer)
	}
	return causePeerPolicy
}

// policyFix says how to relay to the peer anyway.
func policyFix(f failure) string {
	var fix string
	if f.selfPeer {
		fix = "probe from a host the server sees at a public address, or give --peer HOST:PORT of an echo server on a public address"
	} else {
		fix = "give --peer HOST:PORT of an echo server on a public address"
	}
	switch {
	case f.peer.IsLoopback():
		fix += "; to relay to loopback peers (tests and local development only), start the server with relay.allow-loopback-peers: true"
	case f.peer.IsValid():
		bits := 32
		if f.peer.Is6() {
			bits = 128
		}
		fix += fmt.Sprintf("; to relay to %s, add %s to the server's relay.allowed-peers", f.peer, netip.PrefixFrom(f.peer, bits))
	default:
		fix += "; or admit the peer in the server's relay.allowed-peers"
	}
	return fix
}

// cgnat is RFC 6598 shared address space.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// addrClass names the kind of a non-public address ("" for a public one or
// none): the ranges ferry's default peer policy refuses and clients outside
// a network cannot reach.
func addrClass(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return ""
	case a.IsLoopback():
		return "loopback"
	case a.Is4() && a.IsPrivate():
		return "private (RFC 1918)"
	case a.IsPrivate():
		return "unique local (fc00::/7)"
	case cgnat.Contains(a):
		return "carrier-grade NAT (100.64.0.0/10)"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsUnspecified():
		return "unspecified"
	}
	return ""
}

// quotaUser is the user name a server counts quotas for: the part after
// the expiry of a TURN REST user name.
func quotaUser(username string) string {
	if _, user, ok := strings.Cut(username, ":"); ok {
		return user
	}
	return username
}
