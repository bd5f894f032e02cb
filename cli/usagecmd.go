package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryrtc/ferry/cluster"
)

func newUsage(e *env) *cobra.Command {
	var (
		since  time.Duration
		user   string
		file   string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Sum the usage records per user",
		Long: `Read the usage records of the last --since (from the cluster's Redis
Stream, cluster.redis, or from a JSON-lines file, --file or usage.file)
and print, per user, the allocations, their seconds, and the packets and
bytes relayed each way. An allocation counts once, with its latest record
(records are cumulative); malformed records are skipped and counted.`,
		Example: `  ferry usage --since 24h
  ferry usage --since 168h --user alice --json
  ferry usage --file /var/lib/ferry/usage.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, e)
			if err != nil {
				return err
			}
			if since <= 0 {
				return &exitError{code: 2, err: fmt.Errorf("--since %v: want a positive duration, e.g. 24h", since)}
			}
			from := time.Now().Add(-since)
			if file == "" && !cfg.Cluster.Enabled() {
				file = cfg.Usage.File
			}
			var recs []cluster.Record
			var skipped int
			switch {
			case file != "":
				f, err := os.Open(file)
				if err != nil {
					return &exitError{code: 1, err: fmt.Errorf("--file: %w", err)}
				}
				defer f.Close()
				if recs, skipped, err = cluster.ReadUsageFile(f, from); err != nil {
					return &exitError{code: 1, err: fmt.Errorf("reading %s: %w", file, err)}
				}
			case cfg.Cluster.Enabled():
				c, err := cluster.Dial(cfg.Cluster.Redis)
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				defer c.Close()
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				defer cancel()
				if recs, skipped, err = cluster.ReadUsage(ctx, c, cfg.Cluster.KeyPrefix, from); err != nil {
					return &exitError{code: 1, err: err}
				}
			default:
				return &exitError{code: 2, err: cluster.ErrNoSource}
			}
			sum := cluster.Summarize(recs, user)
			if skipped > 0 {
				fmt.Fprintf(e.stderr, "ferry usage: skipped %d malformed records\n", skipped)
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Since   time.Time           `json:"since"`
					Records int                 `json:"records"`
					Skipped int                 `json:"skipped"`
					Users   []cluster.UserUsage `json:"users"`
				}{from.UTC().Truncate(time.Second), len(recs), skipped, sum})
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(tw, "user\tallocations\tseconds\tpackets to peers\tbytes to peers\tpackets from peers\tbytes from peers\t\n")
			for _, u := range sum {
				name := u.User
				if name == "" {
					name = "(anonymous)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%d\t%d\t%d\t\n", name, u.Allocations, u.Seconds,
					u.ToPeerPackets, u.ToPeerBytes, u.FromPeerPackets, u.FromPeerBytes)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back to read")
	cmd.Flags().StringVar(&user, "user", "", "only this user")
	cmd.Flags().StringVar(&file, "file", "", "read this JSON-lines file instead of the cluster's Redis")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addConfigFlags(cmd, "user")
	return cmd
}
