package cli

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferryrtc/ferry/config"
)

// configFlagAnnotation marks the flags addConfigFlags defined, so
// loadConfig hands config.Load those and not a command's own flags.
const configFlagAnnotation = "ferry-config-flag"

// addConfigFlags defines --config and every configuration flag on cmd, but
// for the flags named in except, which the command defines itself with
// another meaning (`ferry creds --user` names the credential's user, not a
// static auth.users entry).
func addConfigFlags(cmd *cobra.Command, except ...string) {
	cmd.Flags().StringP("config", "c", "", "YAML config file (default: ./ferry.yaml or /etc/ferry/ferry.yaml when present; env FERRY_CONFIG)")
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	config.AddFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if slices.Contains(except, f.Name) {
			return
		}
		f.Annotations = map[string][]string{configFlagAnnotation: {"true"}}
		cmd.Flags().AddFlag(f)
	})
}

// configFlags returns the configuration flags of cmd (see addConfigFlags).
func configFlags(cmd *cobra.Command) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd.Name(), pflag.ContinueOnError)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Annotations[configFlagAnnotation]; ok {
			fs.AddFlag(f)
		}
	})
	return fs
}

// loadConfig loads and validates the configuration for cmd. A config error
// exits with code 2 and names the key.
func loadConfig(cmd *cobra.Command, e *env) (config.Config, string, error) {
	path, _ := cmd.Flags().GetString("config")
	if path == "" {
		for _, kv := range e.environ {
			if v, ok := strings.CutPrefix(kv, "FERRY_CONFIG="); ok {
				path = v
			}
		}
	}
	cfg, used, err := config.Load(path, configFlags(cmd), e.environ)
	if err != nil {
		return cfg, used, &exitError{code: 2, err: err}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, used, &exitError{code: 2, err: fmt.Errorf("invalid configuration:\n  %s",
			strings.ReplaceAll(err.Error(), "\n", "\n  "))}
	}
	return cfg, used, nil
}

func newConfigCmd(e *env) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Work with ferry's configuration",
	}
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print the effective config, secrets redacted",
		Long: `Validate the configuration from the config file, FERRY_* environment and
flags exactly as 'ferry serve' would, then print the effective configuration
as YAML with passwords and secrets redacted. Exits 2 naming the bad key when
the configuration is invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, used, err := loadConfig(cmd, e)
			if err != nil {
				return err
			}
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			src := "embedded defaults"
			if used != "" {
				src = used
			}
			fmt.Fprintf(e.stdout, "# configuration OK (from %s, FERRY_* environment and flags)\n", src)
			_, err = e.stdout.Write(out)
			return err
		},
	}
	addConfigFlags(check)
	c.AddCommand(check)
	return c
}

// newLogger builds the process logger from the config.
func newLogger(cfg config.Config, e *env) *slog.Logger {
	level, _ := config.ParseLevel(cfg.Log.Level)
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}
