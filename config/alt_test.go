package config

import (
	"strings"
	"testing"
)

func TestValidateAlt(t *testing.T) {
	udp := []string{"udp://203.0.113.1:3478", "tcp://0.0.0.0:3478", "udp://[::]:3478"}
	tests := []struct {
		name    string
		listen  []string
		altIP   string
		altPort int
		key     string // "" = valid
		msg     string
	}{
		{name: "off", listen: Default().Listen},
		{name: "on", listen: udp, altIP: "203.0.113.2"},
		{name: "on with port", listen: udp, altIP: "203.0.113.2", altPort: 3479},
		{name: "not an ip", listen: udp, altIP: "alt.example", key: "alt-ip", msg: "not an IP"},
		{name: "wildcard listener", listen: Default().Listen, altIP: "203.0.113.2", key: "alt-ip", msg: "every interface"},
		{name: "same ip as listener", listen: udp, altIP: "203.0.113.1", key: "alt-ip", msg: "second address"},
		{name: "no udp listener of family", listen: []string{"udp://203.0.113.1:3478"}, altIP: "2001:db8::2", key: "alt-ip", msg: "family"},
		{name: "unspecified", listen: udp, altIP: "0.0.0.0", key: "alt-ip", msg: "unicast"},
		{name: "port without ip", listen: udp, altPort: 3479, key: "alt-port", msg: "needs alt-ip"},
		{name: "port out of range", listen: udp, altIP: "203.0.113.2", altPort: 70000, key: "alt-port", msg: "not a port"},
		{name: "port equals listener", listen: udp, altIP: "203.0.113.2", altPort: 3478, key: "alt-port", msg: "second port"},
		{name: "port+1 overflows", listen: []string{"udp://203.0.113.1:65535"}, altIP: "203.0.113.2", key: "alt-port", msg: "65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Listen, c.AltIP, c.AltPort = tt.listen, tt.altIP, tt.altPort
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted the configuration")
			}
			if KeyOf(err) != tt.key || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q (key %q), want key %q mentioning %q", err, KeyOf(err), tt.key, tt.msg)
			}
		})
	}
}

func TestAltPortFor(t *testing.T) {
	tests := []struct {
		altPort int
		port    uint16
		want    uint16
	}{
		{0, 3478, 3479},
		{0, 0, 0},
		{4000, 3478, 4000},
		{4000, 0, 4000},
	}
	for _, tt := range tests {
		c := Config{AltPort: tt.altPort}
		if got := c.AltPortFor(tt.port); got != tt.want {
			t.Errorf("AltPortFor(%d) with alt-port %d = %d, want %d", tt.port, tt.altPort, got, tt.want)
		}
	}
}
