package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// ProxyProtocol configures the PROXY protocol v2 headers that load
// balancers (AWS NLB, HAProxy, Kubernetes LoadBalancers) put before a TCP
// connection to say which client it carries. Listeners opt in with
// "?proxy-protocol=v2" (tcp:// and tls:// only).
type ProxyProtocol struct {
	// Trusted are the CIDRs (or single addresses) of the proxies whose
	// headers are believed. A connection to a proxy-protocol listener from
	// any other address is closed unread: a header is a claim anyone can
	// make. Needed by every proxy-protocol listener.
	Trusted []string `mapstructure:"trusted"`
}

// The listener URL option that turns the PROXY protocol on.
const (
	proxyProtocolOption = "proxy-protocol"
	proxyProtocolV2     = "v2"
)

// TrustedProxies parses proxy-protocol.trusted.
func (p *ProxyProtocol) TrustedProxies() ([]netip.Prefix, error) { return ParsePrefixes(p.Trusted) }

// parseListenerOptions parses the query of listen URL s of transport t:
// the only option is proxy-protocol=v2, on tcp:// and tls://.
func parseListenerOptions(s string, t Transport, rawQuery string) (proxy bool, err error) {
	if rawQuery == "" {
		return false, nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return false, fmt.Errorf("%q: the options after '?' are not KEY=VALUE pairs; the listener option is %s=%s", s, proxyProtocolOption, proxyProtocolV2)
	}
	for key, vals := range q {
		if key != proxyProtocolOption {
			return false, fmt.Errorf("%q: unknown listener option %q; the only option is %s=%s (on tcp:// and tls://)", s, key, proxyProtocolOption, proxyProtocolV2)
		}
		if len(vals) != 1 {
			return false, fmt.Errorf("%q: option %s is given %d times; give it once", s, key, len(vals))
		}
		if !strings.EqualFold(vals[0], proxyProtocolV2) {
			return false, fmt.Errorf("%q: %s=%q is not supported; use %s=%s (version 2, binary; version 1 is not accepted)", s, key, vals[0], proxyProtocolOption, proxyProtocolV2)
		}
		if t != TCP && t != TLSt {
			return false, fmt.Errorf("%q: %s is for tcp:// and tls:// listeners only (its header starts a TCP connection); remove it from this %s:// listener", s, key, t)
		}
		proxy = true
	}
	return proxy, nil
}

// validateProxyProtocol checks proxy-protocol.trusted against the
// listeners that read PROXY protocol headers.
func (c *Config) validateProxyProtocol(ls []Listener, add func(string, error)) {
	const key = "proxy-protocol.trusted"
	trusted, err := c.ProxyProtocol.TrustedProxies()
	add(key, err)
	for _, p := range trusted {
		if p.Addr().Is4In6() {
			add(key, fmt.Errorf("%s is IPv4-mapped; write it as an IPv4 CIDR (ferry sees IPv4 peers as IPv4)", p))
		}
	}
	if len(c.ProxyProtocol.Trusted) > 0 {
		return
	}
	for _, l := range ls {
		if l.ProxyProtocol {
			add(key, fmt.Errorf("listener %s reads PROXY protocol headers, but no proxy is trusted; list your load balancers' addresses in %s (--proxy-protocol-trusted), e.g. 10.0.0.0/8", l, key))
			return
		}
	}
}
