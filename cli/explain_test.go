package cli

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferryrtc/ferry/config"
)

func TestCheckHostAddrs(t *testing.T) {
	host := []netip.Addr{netip.MustParseAddr("10.0.0.4"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"),
		netip.MustParseAddr("2001:db8::4"), netip.MustParseAddr("fe80::1")}
	tests := []struct {
		name     string
		mutate   func(*config.Config)
		nonlocal bool
		want     []string // "" entries: no error
	}{
		{name: "defaults (wildcards)", mutate: func(*config.Config) {}},
		{name: "host addresses", mutate: func(c *config.Config) {
			c.Listen = []string{"udp://10.0.0.4:3478", "tcp://[2001:db8::4]:3478", "udp://127.0.0.1:0"}
			c.Relay.IP = []string{"10.0.0.4", "2001:db8::4"}
		}},
		{name: "any loopback address", mutate: func(c *config.Config) {
			c.Listen = []string{"udp://127.0.0.2:3478"}
			c.Relay.IP = []string{"127.0.0.3"}
		}},
		{name: "foreign listener", mutate: func(c *config.Config) { c.Listen = []string{"udp://192.0.2.5:3478", "tcp://192.0.2.5:3478"} },
			want: []string{"listen: udp://192.0.2.5:3478 is not an address of this host", "listen: tcp://192.0.2.5:3478 is not",
				"this host has 10.0.0.4, 127.0.0.1, 2001:db8::4, ::1;", "0.0.0.0 / [::]"}},
		{name: "foreign relay.ip", mutate: func(c *config.Config) { c.Relay.IP = []string{"192.0.2.9", "2001:db8::9"} },
			want: []string{"relay.ip: 192.0.2.9 is not an address of this host", "relay.ip: 2001:db8::9 is not", "leave relay.ip empty"}},
		{name: "foreign alt-ip", mutate: func(c *config.Config) { c.Listen = []string{"udp://10.0.0.4:3478"}; c.AltIP = "10.0.0.5" },
			want: []string{"alt-ip: 10.0.0.5 is not an address of this host"}},
		{name: "non-local binds allowed", nonlocal: true, mutate: func(c *config.Config) { c.Relay.IP = []string{"192.0.2.9"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			tt.mutate(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			ls, _ := cfg.Listeners()
			err := checkHostAddrs(cfg, ls, host, func(bool) bool { return tt.nonlocal })
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error\n%v\nlacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "fe80::1") {
				t.Fatalf("error lists link-local addresses: %v", err)
			}
		})
	}
}

// serve refuses, before binding anything, addresses this host does not
// have, naming the key.
func TestServeRefusesForeignAddrs(t *testing.T) {
	if nonlocalBind(false) {
		t.Skip("this host allows non-local binds (net.ipv4.ip_nonlocal_bind=1)")
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"relay.ip", []string{"--listen", "udp://127.0.0.1:0", "--relay-ip", "192.0.2.9"}, "relay.ip: 192.0.2.9 is not an address of this host"},
		{"listen", []string{"--listen", "udp://192.0.2.9:0", "--relay-ip", "127.0.0.1"}, "listen: udp://192.0.2.9:0 is not an address of this host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			te := newCLIEnv()
			code := te.run(append([]string{"serve", "--user", "u=p", "--realm", "ferry.test"}, tt.args...)...)
			if code != 2 || !strings.Contains(te.stderr.String(), tt.want) || !strings.Contains(te.stderr.String(), "this host has ") {
				t.Fatalf("exit %d, stderr:\n%s\nwant 2 and %q", code, te.stderr, tt.want)
			}
		})
	}
}

func TestLogRelayAddrs(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name           string
		relayIP        []string // relay.ip
		external       []string
		ifAddrs        []netip.Addr
		relay4, relay6 netip.Addr
		want, not      []string
	}{
		{name: "private, no external-ip", relayIP: []string{"10.0.0.5"}, relay4: a("10.0.0.5"),
			want: []string{`level=WARN msg="relays advertise 10.0.0.5, a private (RFC 1918) address: clients outside this network cannot reach it; set relay.external-ip"`}},
		{name: "private with external-ip", relayIP: []string{"10.0.0.5"}, external: []string{"203.0.113.5"}, relay4: a("10.0.0.5"),
			not: []string{"WARN"}},
		{name: "carrier-grade NAT", relayIP: []string{"100.100.1.1"}, relay4: a("100.100.1.1"),
			want: []string{"relays advertise 100.100.1.1, a carrier-grade NAT (100.64.0.0/10) address"}},
		{name: "unique local", relayIP: []string{"fd00::5"}, relay6: a("fd00::5"),
			want: []string{"relays advertise fd00::5, a unique local (fc00::/7) address"}},
		{name: "public", relayIP: []string{"203.0.113.5"}, relay4: a("203.0.113.5"), not: []string{"WARN", "detected"}},
		{name: "loopback (development)", relayIP: []string{"127.0.0.1"}, relay4: a("127.0.0.1"), not: []string{"WARN"}},
		{name: "detected LAN over CGNAT", ifAddrs: []netip.Addr{a("100.100.1.1"), a("192.168.1.5")}, relay4: a("192.168.1.5"),
			want: []string{`msg="relay address detected (relay.ip is empty)" addr=192.168.1.5`, "preferred over the carrier-grade NAT address 100.100.1.1",
				"relays advertise 192.168.1.5, a private (RFC 1918) address"}},
		{name: "detected public", ifAddrs: []netip.Addr{a("10.0.0.5"), a("198.51.100.4")}, relay4: a("198.51.100.4"),
			want: []string{`msg="relay address detected (relay.ip is empty)" addr=198.51.100.4 why="a public address"`}, not: []string{"WARN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Relay.IP, cfg.Relay.ExternalIP = tt.relayIP, tt.external
			var buf bytes.Buffer
			logRelayAddrs(cfg, tt.relay4, tt.relay6, tt.ifAddrs, slog.New(slog.NewTextHandler(&buf, nil)))
			for _, w := range tt.want {
				if !strings.Contains(buf.String(), w) {
					t.Fatalf("log lacks %q:\n%s", w, buf.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(buf.String(), n) {
					t.Fatalf("log has %q:\n%s", n, buf.String())
				}
			}
		})
	}
}

// `ferry config check` suggests the key meant and says how to write a
// value.
func TestConfigCheckExplains(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string
	}{
		{"misspelt key", "relay:\n  allow-loopback-peer: true\n", "relay.allow-loopback-peer: unknown key (did you mean relay.allow-loopback-peers?)"},
		{"bad duration", "drain-timeout: 30 seconds\n", `drain-timeout: "30 seconds" is not a duration; write it like 30s, 5m or 1h30m`},
		{"bad bool", "relay:\n  allow-loopback-peers: maybe\n", `relay.allow-loopback-peers: "maybe" is not true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			path := filepath.Join(t.TempDir(), "ferry.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			te := newCLIEnv()
			if code := te.run("config", "check", "--config", path); code != 2 || !strings.Contains(te.stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant 2 and %q", code, te.stderr, tt.want)
			}
		})
	}
}
