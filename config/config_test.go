package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("embedded default does not validate: %v", err)
	}
	if !c.DefaultListen() {
		t.Fatal("DefaultListen() false for the default")
	}
}

func TestValidateNamesKey(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		key     string
		message string
	}{
		{"bad port range order", func(c *Config) { c.Relay.Ports = "60000-50000" }, "relay.ports", "must not be above"},
		{"port range not a range", func(c *Config) { c.Relay.Ports = "50000" }, "relay.ports", "MIN-MAX"},
		{"port range zero", func(c *Config) { c.Relay.Ports = "0-100" }, "relay.ports", "1 to 65535"},
		{"port range too big", func(c *Config) { c.Relay.Ports = "1000-70000" }, "relay.ports", "1 to 65535"},
		{"unknown transport", func(c *Config) { c.Listen = []string{"sctp://0.0.0.0:3478"} }, "listen", "unknown transport"},
		{"listener host not IP", func(c *Config) { c.Listen = []string{"udp://example.com:3478"} }, "listen", "not an IP"},
		{"listener bad port", func(c *Config) { c.Listen = []string{"udp://127.0.0.1:99999"} }, "listen", "port"},
		{"listener twice", func(c *Config) { c.Listen = []string{"udp://127.0.0.1:3478", "udp://127.0.0.1:3478"} }, "listen", "twice"},
		{"no listeners", func(c *Config) { c.Listen = nil }, "listen", "no listeners"},
		{"tls without key", func(c *Config) {
			c.Listen = []string{"tls://127.0.0.1:5349"}
			c.TLS.Cert = "cert.pem"
		}, "tls.key", "private key"},
		{"tls without cert", func(c *Config) { c.Listen = []string{"tls://127.0.0.1:5349"} }, "tls.cert", "certificate"},
		{"key without cert", func(c *Config) { c.TLS.Key = "key.pem" }, "tls.cert", "missing"},
		{"empty realm", func(c *Config) { c.Realm = " " }, "realm", "empty"},
		{"bad relay ip", func(c *Config) { c.Relay.IP = []string{"nope"} }, "relay.ip", "not an IP"},
		{"two v4 relay ips", func(c *Config) { c.Relay.IP = []string{"10.0.0.1", "10.0.0.2"} }, "relay.ip", "one per family"},
		{"external unspecified", func(c *Config) { c.Relay.ExternalIP = []string{"0.0.0.0"} }, "relay.external-ip", "cannot be advertised"},
		{"bad allowed cidr", func(c *Config) { c.Relay.AllowedPeers = []string{"10.0.0.0/33"} }, "relay.allowed-peers", "CIDR"},
		{"bad denied cidr", func(c *Config) { c.Relay.DeniedPeers = []string{"x"} }, "relay.denied-peers", "CIDR"},
		{"user without password", func(c *Config) { c.Auth.Users = []string{"alice"} }, "auth.users", "name=password"},
		{"user bad hex key", func(c *Config) { c.Auth.Users = []string{"alice=0x1234"} }, "auth.users", "32 hex"},
		{"user twice", func(c *Config) { c.Auth.Users = []string{"a=1", "a=2"} }, "auth.users", "twice"},
		{"secret twice", func(c *Config) { c.Auth.Secrets = []string{"s", "s"} }, "auth.secrets", "repeats"},
		{"empty secret", func(c *Config) { c.Auth.Secrets = []string{""} }, "auth.secrets", "empty"},
		{"lifetime too short", func(c *Config) { c.Relay.AllocationLifetime = time.Second }, "relay.allocation-lifetime", "30s"},
		{"offload mode unknown", func(c *Config) { c.Relay.Offload = "ebpf" }, "relay.offload", "auto, xdp, tc or off"},
		{"offload interface empty", func(c *Config) { c.Relay.OffloadInterfaces = []string{""} }, "relay.offload-interfaces", "interface name"},
		{"offload interface too long", func(c *Config) { c.Relay.OffloadInterfaces = []string{"a-very-long-interface-name"} }, "relay.offload-interfaces", "interface name"},
		{"bad log level", func(c *Config) { c.Log.Level = "loud" }, "log.level", "debug, info"},
		{"bad log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "text or json"},
		{"bad http listen", func(c *Config) { c.HTTP.Listen = "8080" }, "http.listen", "HOST:PORT"},
		{"udp sockets negative", func(c *Config) { c.UDPSockets = -1 }, "udp-sockets", "out of range"},
		{"public host with scheme", func(c *Config) { c.PublicHost = "https://x" }, "public-host", "host name"},
		{"short api key", func(c *Config) { c.HTTP.APIKeys = []string{"short"} }, "http.api-keys", "shorter than 16"},
		{"api key twice", func(c *Config) { c.HTTP.APIKeys = []string{"k-0123456789abcdef", "k-0123456789abcdef"} }, "http.api-keys", "repeats"},
		{"api key with comma", func(c *Config) { c.HTTP.APIKeys = []string{"k-0123456789,abcdef"} }, "http.api-keys", "comma"},
		{"cors wildcard", func(c *Config) { c.HTTP.CORSOrigins = []string{"*"} }, "http.cors-origins", "not allowed"},
		{"cors with path", func(c *Config) { c.HTTP.CORSOrigins = []string{"https://a.example/app"} }, "http.cors-origins", "no path"},
		{"cors bad scheme", func(c *Config) { c.HTTP.CORSOrigins = []string{"ftp://a.example"} }, "http.cors-origins", "http or https"},
		{"cors not a url", func(c *Config) { c.HTTP.CORSOrigins = []string{"a.example"} }, "http.cors-origins", "SCHEME://HOST"},
		{"anonymous without origins", func(c *Config) { c.HTTP.AllowAnonymousOrigins = true }, "http.allow-anonymous-origins", "cors-origins is empty"},
		{"zero http rate", func(c *Config) { c.HTTP.Rate = 0 }, "http.rate", "out of range"},
		{"zero ip burst", func(c *Config) { c.HTTP.IPBurst = 0 }, "http.ip-burst", "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted a broken config")
			}
			if got := err.Error(); !strings.Contains(got, tt.key+": ") || !strings.Contains(got, tt.message) {
				t.Fatalf("error %q does not name key %q with %q", got, tt.key, tt.message)
			}
		})
	}
}

func TestValidateDoesNotEchoSecrets(t *testing.T) {
	c := Default()
	c.Auth.Users = []string{"alice:x=hunter2"}
	err := c.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want an error without the password, got %v", err)
	}
}

func TestRedacted(t *testing.T) {
	c := Default()
	c.Auth.Users = []string{"alice=hunter2", "bob=0x0123456789abcdef0123456789abcdef"}
	c.Auth.Secrets = []string{"topsecret"}
	c.HTTP.APIKeys = []string{"apikey-0123456789xyz"}
	for _, s := range []string{c.String(), func() string { b, _ := c.YAML(); return string(b) }()} {
		for _, secret := range []string{"hunter2", "topsecret", "0123456789abcdef", "apikey-0123456789xyz"} {
			if strings.Contains(s, secret) {
				t.Fatalf("printed config leaks %q:\n%s", secret, s)
			}
		}
		if !strings.Contains(s, "alice") || !strings.Contains(s, "<redacted>") {
			t.Fatalf("printed config lost user names or redaction marks:\n%s", s)
		}
	}
	if c.Auth.Secrets[0] != "topsecret" {
		t.Fatal("Redacted changed the original")
	}
}

func TestParseListener(t *testing.T) {
	tests := []struct {
		in, want, network string
	}{
		{"udp://127.0.0.1:3478", "udp://127.0.0.1:3478", "udp4"},
		{"tcp://[::1]:3478", "tcp://[::1]:3478", "tcp6"},
		{"tls://0.0.0.0", "tls://0.0.0.0:5349", "tcp4"},
		{"dtls://[::]:5349", "dtls://[::]:5349", "udp6"},
		{"UDP://127.0.0.1:0", "udp://127.0.0.1:0", "udp4"},
	}
	for _, tt := range tests {
		l, err := ParseListener(tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if l.String() != tt.want || l.Network() != tt.network {
			t.Fatalf("%s: got %s %s, want %s %s", tt.in, l, l.Network(), tt.want, tt.network)
		}
	}
}

func newFlags(t *testing.T) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	return fs
}

func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.yaml")
	yaml := `realm: file.example
listen: [udp://127.0.0.1:3478]
relay:
  ports: 40000-40100
  allocation-lifetime: 5m
auth:
  users: [alice=pw]
log:
  level: debug
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := newFlags(t)
	if err := fs.Parse([]string{"--realm", "flag.example", "--auth-secret", "s1", "--auth-secret", "s2"}); err != nil {
		t.Fatal(err)
	}
	env := []string{"FERRY_LOG_LEVEL=warn", "FERRY_RELAY_ALLOWED_PEERS=198.51.100.0/24,203.0.113.7", "HOME=/root"}
	c, used, err := Load(path, fs, env)
	if err != nil {
		t.Fatal(err)
	}
	if used != path {
		t.Fatalf("used %q", used)
	}
	checks := []struct{ name, got, want string }{
		{"realm from flag", c.Realm, "flag.example"},
		{"ports from file", c.Relay.Ports, "40000-40100"},
		{"level from env", c.Log.Level, "warn"},
		{"format default", c.Log.Format, "text"},
		{"lifetime from file", c.Relay.AllocationLifetime.String(), "5m0s"},
		{"users from file", strings.Join(c.Auth.Users, ","), "alice=pw"},
		{"secrets from flags", strings.Join(c.Auth.Secrets, ","), "s1,s2"},
		{"allowed from env", strings.Join(c.Relay.AllowedPeers, ","), "198.51.100.0/24,203.0.113.7"},
		{"listen from file", strings.Join(c.Listen, ","), "udp://127.0.0.1:3478"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: got %q want %q", ck.name, ck.got, ck.want)
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadNoFileIsDefault(t *testing.T) {
	t.Chdir(t.TempDir())
	c, used, err := Load("", newFlags(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, statErr := os.Stat("/etc/ferry/ferry.yaml"); statErr != nil && used != "" {
		t.Fatalf("read %q with no file present", used)
	}
	d := Default()
	if c.String() != d.String() {
		t.Fatalf("loaded\n%s\nwant default\n%s", c, d)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        []string
		want       string
	}{
		{"unknown top key", "realmm: x\n", nil, "realmm: unknown key"},
		{"unknown nested key", "relay:\n  portz: 1-2\n", nil, "relay.portz: unknown key"},
		{"bad yaml", "realm: [\n", nil, "config file"},
		{"unknown env", "", []string{"FERRY_RELM=x"}, "FERRY_RELM"},
		{"bad duration", "relay:\n  allocation-lifetime: soon\n", nil, "allocation-lifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(path, newFlags(t), tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestEveryKeyHasFlagAndEnv(t *testing.T) {
	fs := newFlags(t)
	flagged := map[string]bool{}
	for _, f := range flagKeys {
		if fs.Lookup(f.flag) == nil {
			t.Errorf("flag --%s not defined", f.flag)
		}
		flagged[f.key] = true
	}
	for _, k := range Keys() {
		if !flagged[k] {
			t.Errorf("config key %s has no flag", k)
		}
		if !strings.HasPrefix(EnvName(k), "FERRY_") {
			t.Errorf("bad env name for %s", k)
		}
	}
}

func TestReferenceConfigMatchesKeys(t *testing.T) {
	b, err := os.ReadFile("../configs/ferry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(string(b), leaf+":") {
			t.Errorf("configs/ferry.yaml does not document key %s", k)
		}
	}
	// The reference file must itself load (keys known) and validate.
	c, _, err := Load("../configs/ferry.yaml", newFlags(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
