package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is ferry's whole configuration. It is filled once by Load (file,
// FERRY_* environment, flags), defaulted by Default, and checked by Validate.
// The mapstructure tags are the config keys; nested structs give dotted keys
// such as "relay.ports" and environment variables such as FERRY_RELAY_PORTS.
type Config struct {
	// Realm is the long-term credential realm (RFC 8489 §9.2).
	Realm string `mapstructure:"realm"`
	// Software is sent in the SOFTWARE attribute of STUN responses. Empty
	// disables the attribute.
	Software string `mapstructure:"software"`
	// PublicHost is the DNS name or address clients use to reach ferry, put
	// in the iceServers URLs ferry hands out. Empty: the external IP, else the
	// relay address.
	PublicHost string `mapstructure:"public-host"`
	// Listen lists the listener URLs: udp://, tcp://, tls://, dtls://.
	Listen []string `mapstructure:"listen"`
	// UDPSockets is the number of event loops, and of SO_REUSEPORT sockets
	// per UDP listener (one per loop); 0 means half the CPUs, at least one.
	UDPSockets int `mapstructure:"udp-sockets"`
	// AltIP is the alternate IP address for RFC 5780 NAT behaviour discovery:
	// with it, every UDP listener of its family also answers Binding requests
	// on AltIP and AltPort, sends OTHER-ADDRESS, and honours CHANGE-REQUEST.
	// Empty: off (CHANGE-REQUEST gets 420).
	AltIP string `mapstructure:"alt-ip"`
	// AltPort is the alternate port; 0 means each listener's port + 1.
	AltPort int `mapstructure:"alt-port"`

	TLS   TLS   `mapstructure:"tls"`
	Relay Relay `mapstructure:"relay"`
	Auth  Auth  `mapstructure:"auth"`
	Log   Log   `mapstructure:"log"`
	HTTP  HTTP  `mapstructure:"http"`
	// Quota and Limits keep clients within bounds: see quota.go.
	Quota  Quota  `mapstructure:"quota"`
	Limits Limits `mapstructure:"limits"`
	// Cluster joins other nodes through Redis: see cluster.go.
	Cluster Cluster `mapstructure:"cluster"`
	// Usage configures usage records: see cluster.go.
	Usage Usage `mapstructure:"usage"`

	// ProxyProtocol lists the load balancers whose PROXY protocol headers
	// are believed: see proxy.go.
	ProxyProtocol ProxyProtocol `mapstructure:"proxy-protocol"`

	// DrainTimeout is how long SIGTERM lets existing allocations keep
	// relaying (new ones refused, /readyz failing) before ferry exits; 0
	// exits at once.
	DrainTimeout time.Duration `mapstructure:"drain-timeout"`
}

// TLS names the certificate and key served on tls:// and dtls:// listeners.
type TLS struct {
	Cert string `mapstructure:"cert"`
	Key  string `mapstructure:"key"`
}

// Relay configures relay allocations and the peers they may reach.
type Relay struct {
	// IP lists the local addresses relay sockets bind to, at most one per
	// address family. Empty means: detect one per family from the host's
	// interfaces.
	IP []string `mapstructure:"ip"`
	// ExternalIP lists the addresses advertised in XOR-RELAYED-ADDRESS when
	// ferry sits behind a 1:1 NAT, at most one per family.
	ExternalIP []string `mapstructure:"external-ip"`
	// Ports is the relay port range "min-max".
	Ports string `mapstructure:"ports"`
	// AllowLoopbackPeers lets allocations relay to 127.0.0.0/8 and ::1
	// (tests and local development only).
	AllowLoopbackPeers bool `mapstructure:"allow-loopback-peers"`
	// AllowedPeers are CIDRs admitted even if the default policy denies them.
	AllowedPeers []string `mapstructure:"allowed-peers"`
	// DeniedPeers are CIDRs always refused; deny wins over allow.
	DeniedPeers []string `mapstructure:"denied-peers"`
	// AllocationLifetime is the default allocation lifetime.
	AllocationLifetime time.Duration `mapstructure:"allocation-lifetime"`
	// Offload is the kernel fast path for channel-bound UDP traffic:
	// "auto" (XDP where the driver runs it natively and IP forwarding is
	// on, else TC), "xdp",
	// "tc" or "off". Without the capabilities (CAP_BPF and CAP_NET_ADMIN)
	// or kernel support ferry logs why and relays in user space.
	Offload string `mapstructure:"offload"`
	// OffloadInterfaces names the interfaces the fast path attaches to.
	// Empty: every interface, loopback excepted, that carries a listener
	// or relay address (any, for a wildcard listener).
	OffloadInterfaces []string `mapstructure:"offload-interfaces"`
}

// Offload modes of relay.offload.
const (
	OffloadAuto = "auto"
	OffloadXDP  = "xdp"
	OffloadTC   = "tc"
	OffloadOff  = "off"
)

// Auth configures long-term credentials.
type Auth struct {
	// Users are static users "name=password" or "name=0x<hex md5 key>"
	// (coturn's form of MD5(name:realm:password)).
	Users []string `mapstructure:"users"`
	// Secrets are TURN REST API shared secrets. New credentials are signed
	// with the first; all are accepted, so operators can rotate.
	Secrets []string `mapstructure:"secrets"`
	// MaxTTL caps the lifetime of minted REST credentials.
	MaxTTL time.Duration `mapstructure:"max-ttl"`
}

// Log configures the process logger.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// HTTP configures the HTTP listener (credentials API, metrics, health).
type HTTP struct {
	// Listen is the HTTP listen address, e.g. "127.0.0.1:8080"; empty = off.
	Listen string `mapstructure:"listen"`
	// APIKeys are the bearer keys that may call POST /v1/credentials
	// ("Authorization: Bearer <key>"). Secret: redacted when printed.
	APIKeys []string `mapstructure:"api-keys"`
	// CORSOrigins are the browser origins ("https://app.example.com") that
	// may call the credentials API from a page. Others get 403.
	CORSOrigins []string `mapstructure:"cors-origins"`
	// AllowAnonymousOrigins lets a page on one of CORSOrigins mint
	// credentials without an API key. Off by default: every caller needs a
	// key. Only the Origin header vouches for such a request, so only the
	// per-IP rate limit stands between the API and a script that forges it.
	AllowAnonymousOrigins bool `mapstructure:"allow-anonymous-origins"`
	// Rate and Burst limit credentials minted per API key: Rate per minute
	// on average, Burst at once.
	Rate  int `mapstructure:"rate"`
	Burst int `mapstructure:"burst"`
	// IPRate and IPBurst limit requests per client IP (IPv6: per /64) that
	// carry no valid API key: anonymous browser calls and wrong keys.
	IPRate  int `mapstructure:"ip-rate"`
	IPBurst int `mapstructure:"ip-burst"`
	// AdminToken is the bearer token of the admin API under /v1/admin/
	// (list and close allocations); empty: the admin API is off. Secret:
	// redacted when printed.
	AdminToken string `mapstructure:"admin-token"`
	// TestPage serves the "Does my TURN work?" page at / and its
	// GET /v1/status (version, realm, listener URLs, relayed totals; no
	// secrets, no addresses). On by default.
	TestPage bool `mapstructure:"test-page"`
}

// Default returns the embedded default configuration: UDP and TCP on port
// 3478 on every interface, both address families, safe peer policy.
func Default() Config {
	return Config{
		Realm:    "ferry",
		Software: "ferry",
		Listen: []string{
			"udp://0.0.0.0:3478",
			"tcp://0.0.0.0:3478",
			"udp://[::]:3478",
			"tcp://[::]:3478",
		},
		Relay: Relay{
			Ports:              "49152-65535",
			AllocationLifetime: 10 * time.Minute,
			Offload:            OffloadAuto,
		},
		Auth: Auth{
			MaxTTL: 24 * time.Hour,
		},
		Log:  Log{Level: "info", Format: "text"},
		HTTP: HTTP{Rate: 600, Burst: 100, IPRate: 30, IPBurst: 10, TestPage: true},

		Quota:   defaultQuota(),
		Limits:  defaultLimits(),
		Cluster: defaultCluster(),
		Usage:   defaultUsage(),

		DrainTimeout: 30 * time.Second,
	}
}

// DefaultListen reports whether the listeners are the embedded defaults, in
// which case an IPv6 wildcard that the host cannot bind is skipped with a
// warning rather than failing the start.
func (c *Config) DefaultListen() bool {
	d := Default().Listen
	if len(c.Listen) != len(d) {
		return false
	}
	for i := range d {
		if c.Listen[i] != d[i] {
			return false
		}
	}
	return true
}

// Transport is a listener's transport.
type Transport string

// The listener transports ferry serves.
const (
	UDP  Transport = "udp"
	TCP  Transport = "tcp"
	TLSt Transport = "tls"
	DTLS Transport = "dtls"
)

// Listener is one parsed listen URL.
type Listener struct {
	Transport Transport
	Addr      netip.AddrPort
	// ProxyProtocol: every connection starts with a PROXY protocol v2
	// header from a trusted proxy ("?proxy-protocol=v2"; tcp and tls
	// only).
	ProxyProtocol bool
}

// Network returns the Go network name for the socket ("udp4", "tcp6", ...).
func (l Listener) Network() string {
	base := "udp"
	if l.Transport == TCP || l.Transport == TLSt {
		base = "tcp"
	}
	if l.Addr.Addr().Is4() {
		return base + "4"
	}
	return base + "6"
}

// String returns the listener as a URL.
func (l Listener) String() string {
	s := string(l.Transport) + "://" + l.Addr.String()
	if l.ProxyProtocol {
		s += "?" + proxyProtocolOption + "=" + proxyProtocolV2
	}
	return s
}

// ParseListener parses a listen URL such as "udp://127.0.0.1:3478",
// "tls://[::]:5349" or "tcp://0.0.0.0:3478?proxy-protocol=v2".
func ParseListener(s string) (Listener, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return Listener{}, fmt.Errorf("%q is not a listener URL; write it as udp://HOST:PORT, tcp://, tls:// or dtls://", s)
	}
	t := Transport(strings.ToLower(u.Scheme))
	switch t {
	case UDP, TCP, TLSt, DTLS:
	default:
		return Listener{}, fmt.Errorf("%q: unknown transport %q; use udp, tcp, tls or dtls", s, u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return Listener{}, fmt.Errorf("%q: a listener URL takes no path", s)
	}
	proxy, err := parseListenerOptions(s, t, u.RawQuery)
	if err != nil {
		return Listener{}, err
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "3478"
		if t == TLSt || t == DTLS {
			port = "5349"
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return Listener{}, fmt.Errorf("%q: host %q is not an IP address (use 0.0.0.0 or [::] for every interface)", s, host)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Listener{}, fmt.Errorf("%q: port %q is not a port from 1 to 65535 (0 picks a free one)", s, port)
	}
	return Listener{Transport: t, Addr: netip.AddrPortFrom(ip.Unmap(), uint16(p)), ProxyProtocol: proxy}, nil
}

// Listeners parses every listen URL.
func (c *Config) Listeners() ([]Listener, error) {
	out := make([]Listener, 0, len(c.Listen))
	for _, s := range c.Listen {
		l, err := ParseListener(s)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// PortRange parses relay.ports.
func (r *Relay) PortRange() (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(r.Ports), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not a range; write it as MIN-MAX, e.g. 49152-65535", r.Ports)
	}
	x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	y, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil || x == 0 || y == 0 {
		return 0, 0, fmt.Errorf("%q: both ends must be ports from 1 to 65535", r.Ports)
	}
	if x > y {
		return 0, 0, fmt.Errorf("%q: the first port must not be above the second", r.Ports)
	}
	return uint16(x), uint16(y), nil
}

// parseIPs parses a per-family address list: at most one IPv4 and one IPv6.
func parseIPs(list []string) (v4, v6 netip.Addr, err error) {
	for _, s := range list {
		ip, perr := netip.ParseAddr(strings.TrimSpace(s))
		if perr != nil {
			return v4, v6, fmt.Errorf("%q is not an IP address", s)
		}
		ip = ip.Unmap()
		if ip.Is4() {
			if v4.IsValid() {
				return v4, v6, fmt.Errorf("more than one IPv4 address (%s, %s); give at most one per family", v4, ip)
			}
			v4 = ip
		} else {
			if v6.IsValid() {
				return v4, v6, fmt.Errorf("more than one IPv6 address (%s, %s); give at most one per family", v6, ip)
			}
			v6 = ip
		}
	}
	return v4, v6, nil
}

// RelayIPs parses relay.ip into at most one address per family.
func (r *Relay) RelayIPs() (v4, v6 netip.Addr, err error) { return parseIPs(r.IP) }

// ExternalIPs parses relay.external-ip into at most one address per family.
func (r *Relay) ExternalIPs() (v4, v6 netip.Addr, err error) { return parseIPs(r.ExternalIP) }

// ParsePrefixes parses a CIDR list; a bare address is a single-host prefix.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "/") {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not a CIDR such as 198.51.100.0/24 or an IP address", s)
			}
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 198.51.100.0/24", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// keyError names the failing config key and the fix.
type keyError struct {
	Key string
	Err error
}

func (e *keyError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *keyError) Unwrap() error { return e.Err }

// KeyOf returns the config key an error from Validate names, or "".
func KeyOf(err error) string {
	var ke *keyError
	if errors.As(err, &ke) {
		return ke.Key
	}
	return ""
}

func wrapKey(key string, err error) error {
	if err == nil {
		return nil
	}
	return &keyError{Key: key, Err: err}
}

// Validate checks the configuration without changing it or touching the
// system. Every error names the config key at fault and how to fix it; all
// problems are reported at once, joined.
func (c *Config) Validate() error {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, wrapKey(key, err))
		}
	}
	if strings.TrimSpace(c.Realm) == "" {
		add("realm", errors.New("must not be empty; set it to your domain, e.g. example.com"))
	}
	if strings.ContainsAny(c.PublicHost, "/:?#@ ") && !isIP(c.PublicHost) {
		add("public-host", fmt.Errorf("%q is not a host name or IP address (no scheme or port)", c.PublicHost))
	}
	if len(c.Listen) == 0 {
		add("listen", errors.New("no listeners; add at least one, e.g. udp://0.0.0.0:3478"))
	}
	ls, err := c.Listeners()
	add("listen", err)
	needTLS := false
	seen := map[string]bool{}
	for _, l := range ls {
		if l.Transport == TLSt || l.Transport == DTLS {
			needTLS = true
		}
		k := l.Network() + " " + l.Addr.String()
		if seen[k] && l.Addr.Port() != 0 {
			add("listen", fmt.Errorf("%s is listed twice", l))
		}
		seen[k] = true
	}
	if c.UDPSockets < 0 || c.UDPSockets > 255 {
		add("udp-sockets", fmt.Errorf("%d is out of range; use 0 (half the CPUs) to 255", c.UDPSockets))
	}
	c.validateAlt(ls, add)
	c.validateProxyProtocol(ls, add)
	switch {
	case needTLS && c.TLS.Cert == "":
		add("tls.cert", errors.New("a tls:// or dtls:// listener needs a certificate; set tls.cert (--tls-cert)"))
	case needTLS && c.TLS.Key == "":
		add("tls.key", errors.New("a tls:// or dtls:// listener needs a private key; set tls.key (--tls-key)"))
	case c.TLS.Cert != "" && c.TLS.Key == "":
		add("tls.key", errors.New("tls.cert is set but tls.key is missing; set tls.key (--tls-key)"))
	case c.TLS.Key != "" && c.TLS.Cert == "":
		add("tls.cert", errors.New("tls.key is set but tls.cert is missing; set tls.cert (--tls-cert)"))
	}
	_, _, err = c.Relay.PortRange()
	add("relay.ports", err)
	_, _, err = c.Relay.RelayIPs()
	add("relay.ip", err)
	ext4, ext6, err := c.Relay.ExternalIPs()
	add("relay.external-ip", err)
	for _, ip := range []netip.Addr{ext4, ext6} {
		if ip.IsValid() && (ip.IsUnspecified() || ip.IsMulticast()) {
			add("relay.external-ip", fmt.Errorf("%s cannot be advertised; give the public unicast address clients reach", ip))
		}
	}
	_, err = ParsePrefixes(c.Relay.AllowedPeers)
	add("relay.allowed-peers", err)
	_, err = ParsePrefixes(c.Relay.DeniedPeers)
	add("relay.denied-peers", err)
	if c.Relay.AllocationLifetime < 30*time.Second || c.Relay.AllocationLifetime > time.Hour {
		add("relay.allocation-lifetime", fmt.Errorf("%s is out of range; use 30s to 1h (RFC 8656 default 10m)", c.Relay.AllocationLifetime))
	}
	switch c.Relay.Offload {
	case OffloadAuto, OffloadXDP, OffloadTC, OffloadOff:
	default:
		add("relay.offload", fmt.Errorf("%q is not a fast path mode; use auto, xdp, tc or off", c.Relay.Offload))
	}
	for _, name := range c.Relay.OffloadInterfaces {
		if name == "" || len(name) >= 16 || strings.ContainsAny(name, "/ \t") {
			add("relay.offload-interfaces", fmt.Errorf("%q is not an interface name (as ip link shows them, e.g. eth0)", name))
		}
	}
	names := map[string]bool{}
	for _, u := range c.Auth.Users {
		if err := checkUser(u); err != nil {
			add("auth.users", err)
			continue
		}
		name, _, _ := strings.Cut(u, "=")
		if names[name] {
			add("auth.users", fmt.Errorf("user %q is listed twice", name))
		}
		names[name] = true
	}
	secrets := map[string]int{}
	for i, s := range c.Auth.Secrets {
		if s == "" {
			add("auth.secrets", fmt.Errorf("secret #%d is empty", i+1))
		} else if j, dup := secrets[s]; dup {
			add("auth.secrets", fmt.Errorf("secret #%d repeats secret #%d", i+1, j))
		}
		secrets[s] = i + 1
	}
	if c.Auth.MaxTTL < time.Minute || c.Auth.MaxTTL > 30*24*time.Hour {
		add("auth.max-ttl", fmt.Errorf("%s is out of range; use 1m to 720h", c.Auth.MaxTTL))
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		add("log.level", err)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", fmt.Errorf("%q is not a log format; use text or json", c.Log.Format))
	}
	if c.HTTP.Listen != "" {
		if _, err := netip.ParseAddrPort(c.HTTP.Listen); err != nil {
			if _, _, herr := net.SplitHostPort(c.HTTP.Listen); herr != nil {
				add("http.listen", fmt.Errorf("%q is not HOST:PORT, e.g. 127.0.0.1:8080", c.HTTP.Listen))
			}
		}
	}
	c.HTTP.validate(add)
	c.validateQuota(add)
	c.validateOps(add)
	c.validateCluster(add)
	c.validateUsage(add)
	return errors.Join(errs...)
}

// validateOps checks the admin API token and the drain timeout.
func (c *Config) validateOps(add func(string, error)) {
	if c.DrainTimeout < 0 || c.DrainTimeout > time.Hour {
		add("drain-timeout", fmt.Errorf("%s is out of range; use 0 (exit at once) to 1h", c.DrainTimeout))
	}
	t := c.HTTP.AdminToken
	if t == "" {
		return
	}
	switch {
	case len(t) < minAPIKeyLen:
		add("http.admin-token", fmt.Errorf("is shorter than %d characters; make one with: openssl rand -base64 24", minAPIKeyLen))
	case strings.ContainsAny(t, " \t\r\n,"):
		add("http.admin-token", errors.New("contains a space or comma; use letters, digits and +/=_-"))
	case c.HTTP.Listen == "":
		add("http.admin-token", errors.New("is set but http.listen is empty; set http.listen (--http-listen) to serve the admin API"))
	}
	for i, k := range c.HTTP.APIKeys {
		if k == t {
			add("http.admin-token", fmt.Errorf("equals API key #%d; the admin token must be a separate secret", i+1))
		}
	}
}

// minAPIKeyLen is the shortest API key accepted.
const minAPIKeyLen = 16

// validate checks the credentials API settings.
func (h *HTTP) validate(add func(string, error)) {
	keys := map[string]int{}
	for i, k := range h.APIKeys {
		switch {
		case len(k) < minAPIKeyLen:
			add("http.api-keys", fmt.Errorf("key #%d is shorter than %d characters; make one with: openssl rand -base64 24", i+1, minAPIKeyLen))
		case strings.ContainsAny(k, " \t\r\n,"):
			add("http.api-keys", fmt.Errorf("key #%d contains a space or comma; use letters, digits and +/=_-", i+1))
		}
		if j, dup := keys[k]; dup {
			add("http.api-keys", fmt.Errorf("key #%d repeats key #%d", i+1, j))
		}
		keys[k] = i + 1
	}
	for _, o := range h.CORSOrigins {
		if _, err := CanonicalOrigin(o); err != nil {
			add("http.cors-origins", err)
		}
	}
	if h.AllowAnonymousOrigins && len(h.CORSOrigins) == 0 {
		add("http.allow-anonymous-origins", errors.New("is true but http.cors-origins is empty; list the origins whose pages may call without a key"))
	}
	for _, r := range []struct {
		key string
		n   int
	}{{"http.rate", h.Rate}, {"http.burst", h.Burst}, {"http.ip-rate", h.IPRate}, {"http.ip-burst", h.IPBurst}} {
		if r.n < 1 || r.n > 1_000_000 {
			add(r.key, fmt.Errorf("%d is out of range; use 1 to 1000000", r.n))
		}
	}
}

// CanonicalOrigin checks a CORS origin such as "https://app.example.com" or
// "http://localhost:9000" and returns it as browsers send it in the Origin
// header: lower case, no default port, no trailing slash.
func CanonicalOrigin(s string) (string, error) {
	if s == "*" || s == "null" {
		return "", fmt.Errorf("%q is not allowed; list each origin, e.g. https://app.example.com", s)
	}
	u, err := url.Parse(strings.TrimSuffix(s, "/"))
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("%q is not an origin; write it as SCHEME://HOST[:PORT], e.g. https://app.example.com", s)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q: an origin has no path, query or user; write SCHEME://HOST[:PORT]", s)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			return "", fmt.Errorf("%q: port %q is not a port from 1 to 65535", s, port)
		}
	}
	if port == "" || scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		return scheme + "://" + host, nil
	}
	return scheme + "://" + host + ":" + port, nil
}

// AltAddr parses alt-ip; the zero Addr when it is empty.
func (c *Config) AltAddr() (netip.Addr, error) {
	if strings.TrimSpace(c.AltIP) == "" {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(c.AltIP))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", c.AltIP)
	}
	return ip.Unmap(), nil
}

// AltPortFor returns the alternate port for a UDP listener on port: alt-port,
// or port+1 when alt-port is 0 (0 again when port is 0, so an ephemeral
// listener gets an ephemeral alternate).
func (c *Config) AltPortFor(port uint16) uint16 {
	if c.AltPort != 0 || port == 0 {
		return uint16(c.AltPort)
	}
	return port + 1
}

// validateAlt checks alt-ip and alt-port against the UDP listeners.
func (c *Config) validateAlt(ls []Listener, add func(string, error)) {
	if c.AltPort < 0 || c.AltPort > 65535 {
		add("alt-port", fmt.Errorf("%d is not a port; use 1 to 65535, or 0 for each listener's port + 1", c.AltPort))
	}
	alt, err := c.AltAddr()
	if err != nil {
		add("alt-ip", err)
		return
	}
	if !alt.IsValid() {
		if c.AltPort != 0 {
			add("alt-port", errors.New("alt-port needs alt-ip; set alt-ip (--alt-ip) to the second address of this host"))
		}
		return
	}
	if alt.IsUnspecified() || alt.IsMulticast() {
		add("alt-ip", fmt.Errorf("%s cannot be bound as the alternate address; give a second unicast address of this host", alt))
		return
	}
	udp := 0
	for _, l := range ls {
		if l.Transport != UDP || l.Addr.Addr().Is4() != alt.Is4() {
			continue
		}
		udp++
		switch ip := l.Addr.Addr(); {
		case ip.IsUnspecified():
			add("alt-ip", fmt.Errorf("listener %s is on every interface; with alt-ip, UDP listeners must name the primary address (RESPONSE-ORIGIN must be the address the client reached)", l))
		case ip == alt:
			add("alt-ip", fmt.Errorf("%s is also listener %s's address; the alternate must be a second address", alt, l))
		}
		switch p := l.Addr.Port(); {
		case c.AltPort == 0 && p == 65535:
			add("alt-port", fmt.Errorf("listener %s has port 65535, so port + 1 does not exist; set alt-port", l))
		case c.AltPort != 0 && int(p) == c.AltPort:
			add("alt-port", fmt.Errorf("%d is also listener %s's port; the alternate must be a second port", c.AltPort, l))
		}
	}
	if udp == 0 {
		add("alt-ip", fmt.Errorf("no UDP listener of %s's address family; RFC 5780 discovery is served on UDP listeners", alt))
	}
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// checkUser validates one "name=password" or "name=0x<32 hex>" entry
// without echoing the secret part.
func checkUser(u string) error {
	name, pass, ok := strings.Cut(u, "=")
	if !ok || name == "" || pass == "" {
		return fmt.Errorf("entry %q is not name=password", redactUser(u))
	}
	if strings.ContainsAny(name, ": \t") {
		return fmt.Errorf("user name %q must not contain ':' or spaces", name)
	}
	if strings.HasPrefix(pass, "0x") {
		h := pass[2:]
		if len(h) != 32 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
			return fmt.Errorf("user %q: a key in 0x form must be 32 hex digits (MD5 of name:realm:password)", name)
		}
	}
	return nil
}

// ParseLevel maps a log level name to slog's level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not a log level; use debug, info, warn or error", s)
}

const redacted = "<redacted>"

func redactUser(u string) string {
	name, _, ok := strings.Cut(u, "=")
	if !ok {
		return redacted
	}
	return name + "=" + redacted
}

// Redacted returns a copy with every secret replaced, safe to print or log.
func (c Config) Redacted() Config {
	out := c
	out.Listen = append([]string(nil), c.Listen...)
	out.Auth.Users = make([]string, len(c.Auth.Users))
	for i, u := range c.Auth.Users {
		out.Auth.Users[i] = redactUser(u)
	}
	out.Auth.Secrets = make([]string, len(c.Auth.Secrets))
	for i := range c.Auth.Secrets {
		out.Auth.Secrets[i] = redacted
	}
	out.HTTP.APIKeys = make([]string, len(c.HTTP.APIKeys))
	for i := range c.HTTP.APIKeys {
		out.HTTP.APIKeys[i] = redacted
	}
	if c.HTTP.AdminToken != "" {
		out.HTTP.AdminToken = redacted
	}
	out.Cluster.Redis = redactURL(c.Cluster.Redis)
	if c.Cluster.NonceSecret != "" {
		out.Cluster.NonceSecret = redacted
	}
	return out
}

// String prints the configuration with secrets hidden.
func (c Config) String() string {
	return fmt.Sprintf("%+v", c.Redacted().plain())
}

// plain strips methods so fmt does not recurse into String.
type plainConfig Config

func (c Config) plain() plainConfig { return plainConfig(c) }

// LogValue keeps secrets out of structured logs.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }
