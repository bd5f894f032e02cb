package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferryrtc/ferry/bench"
)

func newBench(e *env) *cobra.Command {
	var (
		cfg     bench.Config
		mode    string
		localIP string
		srcNet  string
		asJSON  bool
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "bench turn://HOST:PORT",
		Short: "Load a TURN server (ferry, coturn, any) and measure it",
		Long: `Load any TURN server with N allocations relaying ChannelData to echo peers
that bench runs itself, and report relayed packets/s, Mbit/s, loss and round
trip p50/p99. After setup bench sends raw ChannelData with sendmmsg/recvmmsg
so it costs less than the server it measures.

--rate is packets/s per allocation, sent in small bursts every --tick;
--rate 0 keeps --window packets outstanding per allocation instead (max
throughput). --mode allocs opens and releases allocations as fast as
--allocations concurrent clients can, and reports allocations/s. --mode idle
opens --allocations allocations (up to 65536, each with a permission and a
channel), holds them without traffic for --duration and reports the
server's RSS growth per allocation.

With --server-pid, bench samples /proc for the server's CPU time per relayed
packet (or per allocation) and its RSS growth per allocation. With --cgroup
DIR it also reports the CPU time of that cgroup (put the server and bench in
it to count both, kernel work included) and of the ksoftirqd threads. bench
raises its RLIMIT_NOFILE as far as the run needs (as root, past the hard
limit).

A run ends after --duration (or --count packets/allocations). Targets outside
127.0.0.0/8 and ::1 are refused unless --allow-remote.`,
		Example: `  ferry bench turn://127.0.0.1:3478 --user u --password p --allocations 20 --size 200 --rate 500 --duration 10s
  ferry bench turn://127.0.0.1:3478?transport=tcp --secret "$SECRET" --rate 0 --window 64 --json
  ferry bench turn://127.0.0.1:3478 --user u --password p --mode allocs --allocations 8 --server-pid "$(pidof turnserver)"
  ferry bench turn://127.0.0.1:3478 --user u --password p --mode idle --allocations 20000 --local-ip 127.0.0.2 --duration 5s --server-pid "$PID"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server, transport, err := parseTURNURL(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if transport != "" {
				if cmd.Flags().Changed("transport") && transport != cfg.Transport {
					return &exitError{code: 2, err: fmt.Errorf("%s says transport=%s but --transport is %s", args[0], transport, cfg.Transport)}
				}
				cfg.Transport = transport
			}
			cfg.Server = server
			cfg.Mode = bench.Mode(mode)
			if localIP != "" {
				ip, err := netip.ParseAddr(localIP)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--local-ip: %w", err)}
				}
				cfg.LocalIP = ip
			}
			if srcNet != "" {
				p, err := netip.ParsePrefix(srcNet)
				if err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--source-net: %w", err)}
				}
				cfg.SourceNet = p
			}
			if err := cfg.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))

			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			if e.signals != nil {
				sigs, stop := e.signals()
				defer stop()
				go func() {
					select {
					case <-sigs:
						cancel()
					case <-ctx.Done():
					}
				}()
			}
			rep, err := bench.Run(ctx, cfg, log)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if asJSON {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return rep.WriteText(e.stdout)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Allocations, "allocations", bench.DefaultAllocations, "allocations relaying traffic (relay mode) or concurrent clients (allocs mode)")
	f.IntVar(&cfg.Size, "size", bench.DefaultSize, "ChannelData payload bytes")
	f.IntVar(&cfg.Rate, "rate", bench.DefaultRate, "offered packets/s per allocation; 0 sends as fast as --window allows")
	f.IntVar(&cfg.Window, "window", bench.DefaultWindow, "outstanding packets per allocation with --rate 0")
	f.DurationVar(&cfg.Tick, "tick", bench.DefaultTick, "pacing interval: each allocation's due packets go out in one burst per tick")
	f.StringVar(&cfg.IO, "io", bench.IOAuto, "with --rate: polled (a goroutine per core polls every socket each tick), blocking (a goroutine per socket) or auto (polled at 0.5-32 packets per allocation per tick over UDP)")
	f.DurationVar(&cfg.Duration, "duration", bench.DefaultDuration, "length of the measured phase (at most "+bench.MaxDuration.String()+")")
	f.IntVar(&cfg.Count, "count", 0, "also stop after this many packets (relay) or allocations (allocs); 0: no limit")
	f.StringVar(&cfg.Transport, "transport", "udp", "client transport: udp or tcp (relays are UDP either way)")
	f.StringVar(&mode, "mode", string(bench.ModeRelay), "relay (packets through allocations), allocs (allocations/s) or idle (RSS per idle allocation)")
	f.StringVar(&cfg.User, "user", "", "long-term credential user name (with --secret: the user in the REST user name)")
	f.StringVar(&cfg.Password, "password", "", "long-term credential password")
	f.StringVar(&cfg.Secret, "secret", "", "TURN REST shared secret: mint '<expiry>:<user>' credentials instead of --password")
	f.StringVar(&cfg.Realm, "realm", "", "realm to expect (empty: take the server's)")
	f.IntVar(&cfg.ServerPID, "server-pid", 0, "the server's pid, to report its CPU per packet and RSS per allocation from /proc")
	f.StringVar(&cfg.Cgroup, "cgroup", "", "cgroup directory (v2 cpu.stat or v1 cpuacct) whose CPU to report per packet or allocation, e.g. one holding the server and bench")
	f.StringVar(&localIP, "local-ip", "", "address to bind client sockets and echo peers to, e.g. 127.0.0.2 (empty: the kernel's choice)")
	f.StringVar(&srcNet, "source-net", "", "allocs mode: a new source address from this IPv4 prefix per attempt, local to this machine (default on IPv4 loopback: 127.x.y.z)")
	f.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a target outside 127.0.0.0/8 and ::1 (load only servers you run)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.BoolVarP(&verbose, "verbose", "v", false, "log setup progress to stderr")
	return cmd
}

// parseTURNURL accepts turn://HOST:PORT, turn:HOST:PORT (RFC 7065, with an
// optional ?transport=udp|tcp) or HOST:PORT, and returns HOST:PORT (port
// 3478 when absent) and the transport the URL names ("" when none).
func parseTURNURL(s string) (server, transport string, err error) {
	rest := s
	query := ""
	switch {
	case strings.HasPrefix(s, "turn://"):
		rest = strings.TrimPrefix(s, "turn://")
	case strings.HasPrefix(s, "turn:"):
		rest = strings.TrimPrefix(s, "turn:")
	case strings.HasPrefix(s, "turns:"), strings.Contains(s, "://"):
		return "", "", fmt.Errorf("target %q: want turn://HOST:PORT (TLS and DTLS are not supported)", s)
	}
	rest, query, _ = strings.Cut(rest, "?")
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" {
		return "", "", fmt.Errorf("target %q: no host", s)
	}
	if _, _, err := net.SplitHostPort(rest); err != nil {
		// No port: add the default (brackets for a bare IPv6 address).
		host := strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]")
		rest = net.JoinHostPort(host, "3478")
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return "", "", fmt.Errorf("target %q: %w", s, err)
		}
		transport = q.Get("transport")
		if transport != "" && transport != "udp" && transport != "tcp" {
			return "", "", fmt.Errorf("target %q: transport=%s: want udp or tcp", s, transport)
		}
	}
	return rest, transport, nil
}
