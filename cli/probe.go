package cli

import (
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryrtc/ferry/probe"
)

func newProbe(e *env) *cobra.Command {
	var (
		user, password, secret, realm, peer string
		asJSON                              bool
		timeout                             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "probe stun://HOST[:PORT] | turn://HOST[:PORT]",
		Short: "Check a STUN or TURN server from here: NAT behaviour, or allocate and relay",
		Long: `Probe a STUN or TURN server over UDP from this host and report each step
with its timing.

stun://HOST[:PORT] reports the mapped address the server sees and, when the
server has an RFC 5780 alternate address (ferry with --alt-ip), this
host's NAT mapping behaviour (endpoint-independent, address-dependent or
address-and-port-dependent), filtering behaviour and hairpinning.

turn://HOST[:PORT] allocates with --user/--password (or a credential minted
from the TURN REST --secret), creates a permission, relays a round trip
through the allocation with indications and over a channel, and releases
it. The peer is a second socket of the probe, or --peer HOST:PORT, which
must echo what it receives.

When a step fails the report names it, the cause (the server's answer or
silence, and the server setting involved: its peer policy, a quota, a
drain, the credentials) and a fix line.

Exits 0 when the probe worked, 1 when a step failed, 2 on bad arguments.`,
		Example: `  ferry probe stun://turn.example.com
  ferry probe turn://turn.example.com:3478 --user alice --password secret
  ferry probe turn://turn.example.com --secret "$SECRET" --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := probe.ParseTarget(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if timeout <= 0 {
				return &exitError{code: 2, err: errors.New("--timeout must be positive")}
			}
			ctx := cmd.Context()
			var report interface{ WriteText(w io.Writer) error }
			var perr error
			switch t.Scheme {
			case "stun":
				if user != "" || password != "" || secret != "" || peer != "" {
					return &exitError{code: 2, err: errors.New("--user, --password, --secret and --peer are for turn:// probes")}
				}
				r, err := probe.STUN(ctx, probe.STUNOptions{Target: t, Timeout: timeout})
				report, perr = r, err
			default:
				if secret == "" && (user == "" || password == "") {
					return &exitError{code: 2, err: errors.New("a turn:// probe needs --user and --password, or --secret")}
				}
				r, err := probe.TURN(ctx, probe.TURNOptions{
					Target: t, Username: user, Password: password, Secret: secret,
					Realm: realm, Peer: peer, Timeout: timeout,
				})
				report, perr = r, err
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(report); err != nil {
					return err
				}
			} else if err := report.WriteText(e.stdout); err != nil {
				return err
			}
			if perr != nil {
				return &exitError{code: 1, err: perr}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&user, "user", "", "TURN user name (with --secret: the user part of the minted name)")
	f.StringVar(&password, "password", "", "TURN password")
	f.StringVar(&secret, "secret", "", "TURN REST shared secret to mint a credential from")
	f.StringVar(&realm, "realm", "", "realm to use instead of the one the server announces")
	f.StringVar(&peer, "peer", "", "HOST:PORT of an echoing UDP peer for the relay round trip (default: the probe's own second socket)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.DurationVar(&timeout, "timeout", probe.DefaultTimeout, "how long to wait for each answer")
	return cmd
}
