package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateOps(t *testing.T) {
	const tok = "admin-token-0123456789"
	tests := []struct {
		name    string
		mutate  func(*Config)
		key     string // "" = valid
		message string
	}{
		{"defaults", func(*Config) {}, "", ""},
		{"drain zero", func(c *Config) { c.DrainTimeout = 0 }, "", ""},
		{"drain negative", func(c *Config) { c.DrainTimeout = -time.Second }, "drain-timeout", "out of range"},
		{"drain too long", func(c *Config) { c.DrainTimeout = 2 * time.Hour }, "drain-timeout", "out of range"},
		{"admin token ok", func(c *Config) { c.HTTP.Listen, c.HTTP.AdminToken = "127.0.0.1:8080", tok }, "", ""},
		{"admin token short", func(c *Config) { c.HTTP.Listen, c.HTTP.AdminToken = "127.0.0.1:8080", "short" }, "http.admin-token", "shorter than 16"},
		{"admin token space", func(c *Config) { c.HTTP.Listen, c.HTTP.AdminToken = "127.0.0.1:8080", tok+" x" }, "http.admin-token", "space"},
		{"admin token without listener", func(c *Config) { c.HTTP.AdminToken = tok }, "http.admin-token", "http.listen is empty"},
		{"admin token is an api key", func(c *Config) {
			c.HTTP.Listen, c.HTTP.AdminToken = "127.0.0.1:8080", tok
			c.HTTP.APIKeys = []string{"another-key-0123456789", tok}
		}, "http.admin-token", "API key #2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.key+": ") || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("error %v does not name %s with %q", err, tt.key, tt.message)
			}
			if strings.Contains(err.Error(), tok) {
				t.Fatalf("error echoes the token: %v", err)
			}
		})
	}
}

func TestAdminTokenRedacted(t *testing.T) {
	c := Default()
	c.HTTP.AdminToken = "admin-token-0123456789"
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{c.String(), string(y)} {
		if strings.Contains(s, "admin-token-0123456789") || !strings.Contains(s, "<redacted>") {
			t.Fatalf("printed config leaks the admin token or lost the mark:\n%s", s)
		}
	}
	if c.HTTP.AdminToken != "admin-token-0123456789" {
		t.Fatal("Redacted changed the original")
	}
	if d := Default().Redacted(); d.HTTP.AdminToken != "" {
		t.Fatalf("an empty token printed as %q; it would look configured", d.HTTP.AdminToken)
	}
}

func TestLoadOps(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		env   []string
		drain time.Duration
		token string
	}{
		{"default", nil, nil, 30 * time.Second, ""},
		{"env", nil, []string{"FERRY_DRAIN_TIMEOUT=5s", "FERRY_HTTP_ADMIN_TOKEN=from-env-0123456789"}, 5 * time.Second, "from-env-0123456789"},
		{"flag over env", []string{"--drain-timeout", "0s", "--http-admin-token", "from-flag-0123456789"},
			[]string{"FERRY_DRAIN_TIMEOUT=5s"}, 0, "from-flag-0123456789"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			fs := newFlags(t)
			if err := fs.Parse(tt.flags); err != nil {
				t.Fatal(err)
			}
			c, _, err := Load("", fs, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.DrainTimeout != tt.drain || c.HTTP.AdminToken != tt.token {
				t.Fatalf("drain %s token %q, want %s %q", c.DrainTimeout, c.HTTP.AdminToken, tt.drain, tt.token)
			}
		})
	}
}
