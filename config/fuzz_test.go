package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig feeds config file bytes to Load and Validate: they may
// refuse anything but must never panic, and a loaded config prints.
func FuzzLoadConfig(f *testing.F) {
	ref, err := os.ReadFile("../configs/ferry.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(ref),
		"",
		"realm: x\n",
		"quota:\n  user-allocations: -1\n  max-lifetime: 1s\n",
		"limits:\n  nonce-lifetime: forever\n",
		"listen: [\"udp://[::1]:0\", \"dtls://0.0.0.0\"]\n",
		"relay:\n  ports: 5-1\n  allowed-peers: [10.0.0.0/8, nonsense]\n",
		"auth:\n  users: [\"a=0x00\"]\n",
		"unknown: 1\n",
		"realm: [1, 2]\n",
		"tls: {cert: a}\n",
		"{{{{",
		"quota: 7\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 32<<10 {
			return // config files are small; YAML's cost on huge nested input is not ferry's to fuzz
		}
		path := filepath.Join(t.TempDir(), "ferry.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, _, err := Load(path, nil, nil)
		if err != nil {
			return
		}
		_ = c.Validate()
		_ = c.String()
		_, _ = c.YAML()
	})
}

// FuzzParseListener: ParseListener never panics, and what it accepts
// prints as a URL that parses back to the same listener.
func FuzzParseListener(f *testing.F) {
	for _, s := range []string{
		"udp://127.0.0.1:3478", "tcp://[::1]:0", "tls://0.0.0.0", "dtls://[::]:5349",
		"UDP://1.2.3.4:1", "udp://[fe80::1%eth0]:3478", "udp://[::ffff:1.2.3.4]:9",
		"udp://host:1", "ftp://1.2.3.4:1", "udp://1.2.3.4:99999", "udp://1.2.3.4:1/path",
		"udp://1.2.3.4:1?q", "udp:1.2.3.4", "", "://", "udp://:3478", "udp://[::1",
		"tcp://1.2.3.4:1?proxy-protocol=v2", "tls://[::]:5349?proxy-protocol=V2", "udp://1.2.3.4:1?proxy-protocol=v2",
		"tcp://1.2.3.4:1?proxy-protocol=v2&x=1", "tcp://1.2.3.4:1?proxy-protocol=v1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseListener(s)
		if err != nil {
			return
		}
		back, err := ParseListener(l.String())
		if err != nil {
			t.Fatalf("%q parsed as %v, which does not parse: %v", s, l, err)
		}
		if back != l {
			t.Fatalf("%q: %v printed and parsed back as %v", s, l, back)
		}
		_ = l.Network()
	})
}
