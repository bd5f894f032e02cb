package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/listen"
)

func newCreds(e *env) *cobra.Command {
	var (
		user   string
		ttl    time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "creds",
		Short: "Mint a time-limited TURN credential and iceServers list offline",
		Long: `Mint a TURN REST API credential (username "<expiry>:<user>", password
base64(HMAC-SHA1(secret, username))) signed with the first configured
secret, and print it with a ready iceServers list. Nothing is sent to a
running server: any ferry sharing the secret accepts it.`,
		Example: `  ferry creds --auth-secret "$SECRET" --user alice --ttl 1h --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, e)
			if err != nil {
				return err
			}
			if len(cfg.Auth.Secrets) == 0 {
				return &exitError{code: 2, err: errors.New("auth.secrets: no shared secret configured; set --auth-secret or auth.secrets")}
			}
			snap, err := auth.NewSnapshot(cfg.Realm, cfg.Auth.Users, cfg.Auth.Secrets)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ls, _ := cfg.Listeners()
			c, err := creds.Mint(snap, user, ttl, cfg.Auth.MaxTTL, time.Now(), []creds.Target{{Host: advertisedHost(cfg), Listeners: ls}})
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--user/--ttl: %w", err)}
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(c)
			}
			ice, err := json.MarshalIndent(c.ICEServers, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "username:   %s\ncredential: %s\nexpires:    %s (ttl %ds)\niceServers: %s\n",
				c.Username, c.Credential, c.ExpiresAt.Format(time.RFC3339), c.TTL, ice)
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user name to embed in the credential (optional)")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "credential lifetime (capped by auth.max-ttl)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: username, credential, ttl, expires_at, iceServers")
	addConfigFlags(cmd, "user")
	return cmd
}

// advertisedHost is the host put in iceServers URLs: public-host, else the
// IPv4 external address, else the relay (or detected) IPv4 address.
func advertisedHost(cfg config.Config) string {
	if cfg.PublicHost != "" {
		return cfg.PublicHost
	}
	ext4, ext6, _ := cfg.Relay.ExternalIPs()
	if ext4.IsValid() {
		return ext4.String()
	}
	if ext6.IsValid() {
		return ext6.String()
	}
	v4, v6, err := relayIPs(cfg, listen.InterfaceAddrs())
	if err == nil && v4.IsValid() {
		return v4.String()
	}
	if err == nil && v6.IsValid() {
		return v6.String()
	}
	return ""
}
