package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseListenerProxyProtocol(t *testing.T) {
	tests := []struct {
		in    string
		proxy bool
		err   string // substring of the error; "" for success
	}{
		{"tcp://0.0.0.0:3478?proxy-protocol=v2", true, ""},
		{"tls://[::]:5349?proxy-protocol=v2", true, ""},
		{"TCP://127.0.0.1:3478?proxy-protocol=V2", true, ""},
		{"tcp://127.0.0.1:3478", false, ""},
		{"tcp://127.0.0.1:3478?", false, ""},
		{"udp://0.0.0.0:3478?proxy-protocol=v2", false, "tcp:// and tls:// listeners only"},
		{"dtls://0.0.0.0:5349?proxy-protocol=v2", false, "tcp:// and tls:// listeners only"},
		{"tcp://0.0.0.0:3478?proxy-protocol=v1", false, `proxy-protocol="v1" is not supported; use proxy-protocol=v2`},
		{"tcp://0.0.0.0:3478?proxy-protocol", false, `proxy-protocol="" is not supported`},
		{"tcp://0.0.0.0:3478?proxy-protocol=v2&proxy-protocol=v2", false, "given 2 times"},
		{"tcp://0.0.0.0:3478?proxy=v2", false, `unknown listener option "proxy"; the only option is proxy-protocol=v2`},
		{"tcp://0.0.0.0:3478?proxy-protocol=v2;x", false, "not KEY=VALUE"},
		{"tcp://0.0.0.0:3478/x?proxy-protocol=v2", false, "no path"},
	}
	for _, tt := range tests {
		l, err := ParseListener(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %v, want an error with %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if l.ProxyProtocol != tt.proxy {
			t.Errorf("%s: ProxyProtocol %v, want %v", tt.in, l.ProxyProtocol, tt.proxy)
		}
		back, err := ParseListener(l.String())
		if err != nil || back != l {
			t.Errorf("%s printed as %s parses back as %+v, %v", tt.in, l, back, err)
		}
	}
}

func TestValidateProxyProtocol(t *testing.T) {
	tests := []struct {
		name    string
		listen  []string
		trusted []string
		err     string // substring of the proxy-protocol.trusted error; "" for none
	}{
		{"trusted", []string{"tcp://0.0.0.0:3478?proxy-protocol=v2"}, []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"}, ""},
		{"no listener needs it", []string{"udp://0.0.0.0:3478"}, []string{"10.0.0.0/8"}, ""},
		{"nobody trusted", []string{"udp://0.0.0.0:3478", "tcp://0.0.0.0:3478?proxy-protocol=v2"}, nil,
			"listener tcp://0.0.0.0:3478?proxy-protocol=v2 reads PROXY protocol headers, but no proxy is trusted"},
		{"bad CIDR", []string{"tcp://0.0.0.0:3478?proxy-protocol=v2"}, []string{"10.0.0.0/40"}, "not a CIDR"},
		{"mapped CIDR", []string{"tcp://0.0.0.0:3478?proxy-protocol=v2"}, []string{"::ffff:10.0.0.0/104"}, "IPv4-mapped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Listen = tt.listen
			c.ProxyProtocol.Trusted = tt.trusted
			err := c.Validate()
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Validate: %v, want an error with %q", err, tt.err)
			}
			if KeyOf(err) != "proxy-protocol.trusted" {
				t.Fatalf("error names key %q, want proxy-protocol.trusted: %v", KeyOf(err), err)
			}
			t.Log(err)
		})
	}
}

// TestLoadProxyProtocol: the trusted list comes from the file, the
// FERRY_PROXY_PROTOCOL_TRUSTED environment variable (comma-separated) and
// the repeatable --proxy-protocol-trusted flag.
func TestLoadProxyProtocol(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.yaml")
	yaml := "listen: [\"tls://127.0.0.1:5349?proxy-protocol=v2\"]\ntls: {cert: c.pem, key: k.pem}\nproxy-protocol:\n  trusted: [10.0.0.0/8]\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(path, newFlags(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.ProxyProtocol.Trusted, ","); got != "10.0.0.0/8" {
		t.Fatalf("from the file: %q", got)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c, _, err = Load(path, newFlags(t), []string{"FERRY_PROXY_PROTOCOL_TRUSTED=192.0.2.0/24,198.51.100.7"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.ProxyProtocol.Trusted, ","); got != "192.0.2.0/24,198.51.100.7" {
		t.Fatalf("from the environment: %q", got)
	}
	fs := newFlags(t)
	if err := fs.Parse([]string{"--proxy-protocol-trusted", "172.16.0.0/12", "--proxy-protocol-trusted", "fd00::/8"}); err != nil {
		t.Fatal(err)
	}
	c, _, err = Load(path, fs, []string{"FERRY_PROXY_PROTOCOL_TRUSTED=192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.ProxyProtocol.Trusted, ","); got != "172.16.0.0/12,fd00::/8" {
		t.Fatalf("from the flags: %q", got)
	}
	ls, err := c.Listeners()
	if err != nil || len(ls) != 1 || !ls[0].ProxyProtocol {
		t.Fatalf("listeners %+v, %v", ls, err)
	}
}
