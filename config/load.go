package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// flagKeys maps each command-line flag to its config key.
var flagKeys = []struct {
	flag, key, usage string
}{
	{"realm", "realm", "long-term credential realm"},
	{"software", "software", "SOFTWARE attribute in STUN responses (empty: none)"},
	{"public-host", "public-host", "host name or IP clients use to reach ferry, for the iceServers it hands out"},
	{"listen", "listen", "listener URL, repeatable: udp://127.0.0.1:3478, tcp://[::1]:3478, tls://0.0.0.0:5349, dtls://0.0.0.0:5349; tcp:// and tls:// behind a load balancer take ?proxy-protocol=v2"},
	{"udp-sockets", "udp-sockets", "event loops, and SO_REUSEPORT sockets per UDP listener (0: half the CPUs, at least one)"},
	{"alt-ip", "alt-ip", "second address of this host for RFC 5780 NAT behaviour discovery on UDP listeners (empty: off)"},
	{"alt-port", "alt-port", "alternate port for RFC 5780 discovery (0: each UDP listener's port + 1)"},
	{"tls-cert", "tls.cert", "PEM certificate (chain) for tls:// and dtls:// listeners"},
	{"tls-key", "tls.key", "PEM private key for tls:// and dtls:// listeners"},
	{"proxy-protocol-trusted", "proxy-protocol.trusted", "CIDR of a load balancer whose PROXY protocol headers are believed on listeners with ?proxy-protocol=v2, repeatable"},
	{"relay-ip", "relay.ip", "local address relay sockets bind to, one per family (default: detected)"},
	{"external-ip", "relay.external-ip", "public address advertised for relays behind a 1:1 NAT, one per family"},
	{"relay-ports", "relay.ports", "relay port range MIN-MAX"},
	{"allow-loopback-peers", "relay.allow-loopback-peers", "let relays reach 127.0.0.0/8 and ::1 (tests and local development only)"},
	{"allowed-peers", "relay.allowed-peers", "peer CIDR admitted despite the default policy, repeatable"},
	{"denied-peers", "relay.denied-peers", "peer CIDR always refused (wins over allowed-peers), repeatable"},
	{"allocation-lifetime", "relay.allocation-lifetime", "default allocation lifetime"},
	{"relay-offload", "relay.offload", "kernel fast path for channel-bound UDP traffic: auto, xdp, tc or off"},
	{"relay-offload-interface", "relay.offload-interfaces", "interface the fast path attaches to, repeatable (default: those carrying listener or relay addresses)"},
	{"user", "auth.users", "static user name=password or name=0x<md5 key>, repeatable"},
	{"auth-secret", "auth.secrets", "TURN REST API shared secret, repeatable; the first signs new credentials"},
	{"max-ttl", "auth.max-ttl", "longest lifetime of a minted credential"},
	{"log-level", "log.level", "debug, info, warn or error"},
	{"log-format", "log.format", "text or json"},
	{"http-listen", "http.listen", "HTTP API, metrics and health listener HOST:PORT (empty: off)"},
	{"http-api-key", "http.api-keys", "bearer key for POST /v1/credentials, repeatable (secret)"},
	{"http-cors-origin", "http.cors-origins", "browser origin allowed to call the credentials API, e.g. https://app.example.com, repeatable"},
	{"http-test-page", "http.test-page", "serve the \"Does my TURN work?\" page at / and GET /v1/status (--http-test-page=false: off)"},
	{"http-allow-anonymous-origins", "http.allow-anonymous-origins", "let pages on http.cors-origins mint credentials without an API key (rate-limited per IP)"},
	{"http-rate", "http.rate", "credentials per minute per API key"},
	{"http-burst", "http.burst", "credentials at once per API key"},
	{"http-ip-rate", "http.ip-rate", "requests per minute per client IP without a valid API key"},
	{"http-ip-burst", "http.ip-burst", "requests at once per client IP without a valid API key"},
	{"quota-user-allocations", "quota.user-allocations", "live allocations per user, past it Allocate gets 486 (0: unlimited)"},
	{"quota-total-allocations", "quota.total-allocations", "live allocations of the server, past it Allocate gets 508 (0: unlimited)"},
	{"quota-permissions", "quota.permissions", "peer permissions per allocation, past it CreatePermission gets 508 (0: unlimited)"},
	{"quota-channels", "quota.channels", "channel bindings per allocation, past it ChannelBind gets 508 (0: unlimited)"},
	{"quota-max-lifetime", "quota.max-lifetime", "longest allocation LIFETIME a client may ask for (1m to 1h)"},
	{"quota-allocation-bandwidth", "quota.allocation-bandwidth", "relayed bytes per second per allocation and direction (0: unlimited)"},
	{"quota-user-bandwidth", "quota.user-bandwidth", "relayed bytes per second per user and direction (0: unlimited)"},
	{"quota-user-bytes", "quota.user-bytes", "bytes one user may relay per quota.user-bytes-period, on every node together (0: unlimited)"},
	{"quota-user-bytes-period", "quota.user-bytes-period", "the period of quota.user-bytes, from the Unix epoch (24h: each UTC day)"},
	{"cluster-redis", "cluster.redis", "Redis URL that joins this node to a cluster: redis://[user:password@]host:port/db, rediss:// for TLS (empty: a single node)"},
	{"cluster-key-prefix", "cluster.key-prefix", "prefix of every Redis key ferry writes"},
	{"cluster-node-id", "cluster.node-id", "this node's name in the cluster (default: the host name)"},
	{"cluster-region", "cluster.region", "this node's region, preferred for callers in it"},
	{"cluster-public-host", "cluster.public-host", "host name or address clients reach this node at (default: public-host)"},
	{"cluster-placement-count", "cluster.placement-count", "nodes named in an iceServers answer"},
	{"cluster-nonce-secret", "cluster.nonce-secret", "secret every node shares so that one node's nonces are valid on the others (secret)"},
	{"usage-file", "usage.file", "JSON-lines file usage records are appended to (empty: none; with a cluster they also go to Redis)"},
	{"usage-interval", "usage.interval", "how often a live allocation's usage record is written"},
	{"usage-stream-max-len", "usage.stream-max-len", "records the cluster's usage stream keeps, about"},
	{"limits-allocate-rate", "limits.allocate-rate", "UDP answers before a credential is checked (challenges), per minute per client IP (0: unlimited)"},
	{"limits-allocate-burst", "limits.allocate-burst", "UDP answers before a credential is checked, at once per client IP"},
	{"limits-auth-failure-rate", "limits.auth-failure-rate", "refused credentials per minute of one user name from one client IP before its requests get an unchecked 401 (0: unlimited)"},
	{"limits-auth-failure-burst", "limits.auth-failure-burst", "refused credentials at once of one user name from one client IP"},
	{"limits-tracked-ips", "limits.tracked-ips", "client IPs each per-IP limit remembers"},
	{"limits-nonce-lifetime", "limits.nonce-lifetime", "how long a nonce is accepted before 438 Stale Nonce (1m to 1h)"},
	{"limits-bind-nonces", "limits.bind-nonces", "accept a nonce only from the IP address and port it was sent to"},
	{"http-admin-token", "http.admin-token", "bearer token for the admin API under /v1/admin/ (secret; empty: off)"},
	{"drain-timeout", "drain-timeout", "on SIGTERM, how long existing allocations keep relaying before exit (0: exit at once)"},
}

// AddFlags defines ferry's configuration flags on fs. Their defaults are the
// embedded defaults; Load only takes a flag's value when it was set.
func AddFlags(fs *pflag.FlagSet) {
	d := Default()
	vals := flatten(d)
	for _, f := range flagKeys {
		switch v := vals[f.key].(type) {
		case string:
			fs.String(f.flag, v, f.usage)
		case []string:
			fs.StringArray(f.flag, v, f.usage)
		case bool:
			fs.Bool(f.flag, v, f.usage)
		case int:
			fs.Int(f.flag, v, f.usage)
		case time.Duration:
			fs.Duration(f.flag, v, f.usage)
		default:
			panic(fmt.Sprintf("config: flag %s has unsupported type %T", f.flag, v))
		}
	}
}

// SearchPaths returns the config files tried, in order, when --config is
// not given.
func SearchPaths() []string { return []string{"ferry.yaml", "/etc/ferry/ferry.yaml"} }

// Load fills a Config from, in rising precedence: the embedded defaults, the
// config file (path, or the first of SearchPaths() that exists), FERRY_*
// environment variables, and the flags in fs that were set. Unknown keys in
// the file are errors. It does not validate. It returns the file it read ("" if
// none).
func Load(path string, fs *pflag.FlagSet, environ []string) (Config, string, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	for k, val := range flatten(Default()) {
		v.SetDefault(k, val)
	}
	used := ""
	if path == "" {
		for _, p := range SearchPaths() {
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, "", fmt.Errorf("config file: %w", err)
		}
		if err := checkKnownKeys(b); err != nil {
			return Config{}, "", listed("config file "+path, err)
		}
		if err := v.MergeConfig(bytes.NewReader(b)); err != nil {
			return Config{}, "", fmt.Errorf("config file %s: %w", path, err)
		}
		used = path
	}
	env := map[string]string{}
	for _, kv := range environ {
		k, val, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, "FERRY_") {
			env[k] = val
		}
	}
	for k := range flatten(Default()) {
		name := EnvName(k)
		if val, ok := env[name]; ok {
			v.Set(k, val)
			delete(env, name)
		}
	}
	for name := range env {
		switch name {
		case "FERRY_CONFIG":
		default:
			names := []string{"FERRY_CONFIG"}
			for k := range flatten(Default()) {
				names = append(names, EnvName(k))
			}
			hint := didYouMean(name, names)
			if hint == "" {
				hint = " (see configs/ferry.yaml for the keys)"
			}
			return Config{}, "", fmt.Errorf("environment variable %s is not a ferry setting%s", name, hint)
		}
	}
	if fs != nil {
		for _, f := range flagKeys {
			fl := fs.Lookup(f.flag)
			if fl == nil || !fl.Changed {
				continue
			}
			if sv, ok := fl.Value.(pflag.SliceValue); ok {
				v.Set(f.key, sv.GetSlice())
			} else {
				v.Set(f.key, fl.Value.String())
			}
		}
	}
	var c Config
	dec := viper.DecoderConfigOption(func(dc *mapstructure.DecoderConfig) {
		dc.ErrorUnused = true
		dc.DecodeHook = decodeValues
	})
	if err := v.Unmarshal(&c, dec); err != nil {
		return Config{}, "", listed("config", decodeErrors(err))
	}
	return c, used, nil
}

// EnvName is the environment variable for a config key:
// "relay.allowed-peers" -> FERRY_RELAY_ALLOWED_PEERS.
func EnvName(key string) string {
	return "FERRY_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

// Keys lists every config key, dotted.
func Keys() []string {
	m := flatten(Default())
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// checkKnownKeys rejects keys the Config does not have, naming them.
func checkKnownKeys(b []byte) error {
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return err
	}
	known := flatten(Default())
	keys := make([]string, 0, len(known))
	sections := map[string]bool{}
	for k := range known {
		keys = append(keys, k)
		for i := strings.Index(k, "."); i >= 0; i = next(k, i) {
			sections[k[:i]] = true
		}
	}
	var errs []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, val := range m {
			key := prefix + k
			if sub, ok := val.(map[string]any); ok {
				if _, leaf := known[key]; !leaf {
					walk(key+".", sub)
					continue
				}
			}
			if _, ok := known[key]; ok {
				continue
			}
			if sections[key] {
				if val == nil { // a section whose keys are all commented out
					continue
				}
				errs = append(errs, fmt.Sprintf("%s: is a section, not a value; write its keys under it, like %s.%s", key, key, firstUnder(keys, key)))
				continue
			}
			hint := didYouMean(key, keys)
			if hint == "" {
				hint = " (see configs/ferry.yaml for the keys)"
			}
			errs = append(errs, key+": unknown key"+hint)
		}
	}
	walk("", raw)
	if len(errs) == 0 {
		return nil
	}
	slices.Sort(errs)
	return errors.New(strings.Join(errs, "\n"))
}

// next returns the index of the dot after the one at i in k, or -1.
func next(k string, i int) int {
	j := strings.Index(k[i+1:], ".")
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// firstUnder returns the first key of section (sorted), without the
// section.
func firstUnder(keys []string, section string) string {
	var under []string
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(k, section+"."); ok {
			under = append(under, rest)
		}
	}
	slices.Sort(under)
	if len(under) == 0 {
		return "key"
	}
	return under[0]
}

// flatten maps every leaf of c to its dotted key.
func flatten(c Config) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("mapstructure")
			if tag == "" || tag == "-" {
				continue
			}
			fv := v.Field(i)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(prefix+tag+".", fv)
				continue
			}
			val := fv.Interface()
			if s, ok := val.([]string); ok && s == nil {
				val = []string{}
			}
			out[prefix+tag] = val
		}
	}
	walk("", reflect.ValueOf(c))
	return out
}

// YAML renders the configuration, secrets redacted, as a config file.
func (c Config) YAML() ([]byte, error) {
	r := c.Redacted()
	m := map[string]any{}
	for k, v := range flatten(r) {
		if d, ok := v.(time.Duration); ok {
			v = d.String()
		}
		parts := strings.Split(k, ".")
		cur := m
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		cur[parts[len(parts)-1]] = v
	}
	return yaml.Marshal(m)
}
