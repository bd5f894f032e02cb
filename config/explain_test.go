package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Config errors name the key, say what is wrong with the value and how
// to write it, and suggest the key meant for a misspelt one.
func TestLoadExplains(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        []string
		want       []string // each a line of the error, or part of one
	}{
		{name: "key missing its s", yaml: "relay:\n  allow-loopback-peer: true\n",
			want: []string{"relay.allow-loopback-peer: unknown key (did you mean relay.allow-loopback-peers?)"}},
		{name: "misspelt section", yaml: "rely:\n  ports: 40000-40999\n",
			want: []string{"rely.ports: unknown key (did you mean relay.ports?)"}},
		{name: "key outside its section", yaml: "allowed-peers: [198.51.100.0/24]\n",
			want: []string{"allowed-peers: unknown key (did you mean relay.allowed-peers?)"}},
		{name: "nothing close", yaml: "colour: blue\n",
			want: []string{"colour: unknown key (see configs/ferry.yaml for the keys)"}},
		{name: "section given a value", yaml: "relay: 5\n",
			want: []string{"relay: is a section, not a value; write its keys under it, like relay.allocation-lifetime"}},
		{name: "env misspelt", env: []string{"FERRY_RELAY_ALLOW_LOOPBACK_PEER=true"},
			want: []string{"FERRY_RELAY_ALLOW_LOOPBACK_PEER is not a ferry setting (did you mean FERRY_RELAY_ALLOW_LOOPBACK_PEERS?)"}},
		{name: "duration in words", yaml: "drain-timeout: 30 seconds\n",
			want: []string{`config: drain-timeout: "30 seconds" is not a duration; write it like 30s, 5m or 1h30m`}},
		{name: "duration without unit", yaml: "drain-timeout: 30\n",
			want: []string{"drain-timeout: 30 is not a duration: it has no unit; write it like 30s, 5m or 1h30m"}},
		{name: "duration from env", env: []string{"FERRY_RELAY_ALLOCATION_LIFETIME=ten minutes"},
			want: []string{`relay.allocation-lifetime: "ten minutes" is not a duration`}},
		{name: "int in words", yaml: "udp-sockets: four\n",
			want: []string{`udp-sockets: "four" is not a whole number; write a whole number such as 0, 4 or 1000000, without units`}},
		{name: "int with a fraction", yaml: "udp-sockets: 1.5\n",
			want: []string{"udp-sockets: 1.5 is not a whole number"}},
		{name: "int with units", env: []string{"FERRY_QUOTA_USER_BYTES=10GB"},
			want: []string{`quota.user-bytes: "10GB" is not a whole number`}},
		{name: "bool", yaml: "relay:\n  allow-loopback-peers: maybe\n",
			want: []string{`relay.allow-loopback-peers: "maybe" is not true or false; write true or false`}},
		{name: "bool as a number", yaml: "relay:\n  allow-loopback-peers: 2\n",
			want: []string{"relay.allow-loopback-peers: 2 is not true or false"}},
		{name: "list given a map", yaml: "relay:\n  allowed-peers: {net: 10.0.0.0/8}\n",
			want: []string{`relay.allowed-peers: a map of keys is not a list; write [a, b], or one item a line starting with "- "`}},
		{name: "list item a map", yaml: "relay:\n  allowed-peers: [10.0.0.0/8, {net: 10.1.0.0/16}]\n",
			want: []string{"relay.allowed-peers (item 2): a map of keys is not a single value; write one"}},
		{name: "value given a list", yaml: "relay:\n  ports: [40000, 40999]\n",
			want: []string{"relay.ports: a list is not a single value; write one, like 49152-65535"}},
		{name: "several, one a line", yaml: "drain-timeout: soon\nudp-sockets: x\n",
			want: []string{"config:\n  drain-timeout: \"soon\" is not a duration", "\n  udp-sockets: \"x\" is not a whole number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.yaml != "" {
				path = filepath.Join(t.TempDir(), "f.yaml")
				if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				t.Chdir(t.TempDir())
			}
			_, _, err := Load(path, newFlags(t), tt.env)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error\n%v\nlacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "mapstructure") || strings.Contains(err.Error(), "strconv.") || strings.Contains(err.Error(), "decoding failed") {
				t.Fatalf("raw decoder error: %v", err)
			}
		})
	}
}

// What the old decoder accepted still loads to the same values.
func TestLoadValueForms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.yaml")
	yaml := "realm: 123\ndrain-timeout: 0\nudp-sockets: 2\nalt-port: 4000.0\n" +
		"relay:\n  allow-loopback-peers: 1\n  allowed-peers: 198.51.100.0/24\n  allocation-lifetime: 20m\n" +
		"limits:\n  bind-nonces: false\nquota:\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(path, newFlags(t), []string{"FERRY_LISTEN=udp://127.0.0.1:3478,tcp://127.0.0.1:3478", "FERRY_LOG_LEVEL=debug", "FERRY_HTTP_RATE= 7"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Realm != "123" || c.DrainTimeout != 0 || c.UDPSockets != 2 || c.AltPort != 4000 || !c.Relay.AllowLoopbackPeers ||
		len(c.Relay.AllowedPeers) != 1 || c.Relay.AllocationLifetime != 20*time.Minute || c.Limits.BindNonces ||
		len(c.Listen) != 2 || c.Log.Level != "debug" || c.HTTP.Rate != 7 || c.Quota != Default().Quota {
		t.Fatalf("loaded %+v", c)
	}
}

func TestDidYouMean(t *testing.T) {
	keys := Keys()
	for in, want := range map[string]string{
		"relay.allow-loopback-peer":  "relay.allow-loopback-peers",
		"relay.alowed-peers":         "relay.allowed-peers",
		"realmm":                     "realm",
		"http.cors-origin":           "http.cors-origins",
		"drain_timeout":              "drain-timeout",
		"auth.secret":                "auth.secrets",
		"ports":                      "relay.ports",
		"quota.user-alocations":      "quota.user-allocations",
		"something-else-entirely":    "",
		"http.apikeys":               "http.api-keys",
		"relay.external-ips":         "relay.external-ip",
		"listen.udp":                 "",
		"cluster.redis-url":          "",
		"tls.certificate":            "",
		"limits.allocate-burst-size": "",
	} {
		got := didYouMean(in, keys)
		if want == "" && got != "" || want != "" && got != " (did you mean "+want+"?)" {
			t.Errorf("didYouMean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"", "ab", 2}, {"kitten", "sitting", 3}, {"peer", "peers", 1}, {"abc", "abc", 0}, {"ab", "ba", 2}} {
		if d := editDistance(tt.a, tt.b); d != tt.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, d, tt.d)
		}
	}
}
