package cli

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferryrtc/ferry/admin"
	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/httpapi"
	"github.com/ferryrtc/ferry/listen"
)

func newServe(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the STUN/TURN server",
		Long: `Run the STUN/TURN server on every configured listener.

With no configuration at all it listens on UDP and TCP 3478 on every
interface, makes a random shared secret for this run and prints an
iceServers list with a credential valid for one hour.

SIGHUP re-reads users, secrets, the credentials API's keys, origins and
limits, and the TLS certificate without dropping allocations. SIGTERM drains: /readyz fails at once, new allocations are
refused with 508 so clients use their other TURN servers, and existing ones
keep relaying until none is left or --drain-timeout has passed; then ferry
exits 0. SIGINT, or a second SIGTERM, closes listeners and allocations at
once and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd, e)
		},
	}
	addConfigFlags(cmd)
	return cmd
}

// runtimeState is what serve built, for reloads.
type runtimeState struct {
	cfg       config.Config
	generated string // secret made for this run, if none was configured
	authn     *auth.Store
	certs     *listen.Certs
	api       *httpapi.API   // credentials API; nil without http.listen
	admin     *admin.Handler // admin API; nil without http.listen
	// onCredentials, if set, receives each new credential snapshot
	// (ferry's own engine reads them from its shared state).
	onCredentials func(*auth.Snapshot)
}

func serve(cmd *cobra.Command, e *env) error {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	cfg, used, err := loadConfig(cmd, e)
	if err != nil {
		return err
	}
	log := newLogger(cfg, e)
	if used != "" {
		log.Info("config file read", "path", used)
	}
	st := &runtimeState{cfg: cfg}
	if len(cfg.Auth.Users) == 0 && len(cfg.Auth.Secrets) == 0 {
		st.generated, err = randomSecret()
		if err != nil {
			return err
		}
	}
	snap, err := st.snapshot(cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	st.authn = auth.NewStore(snap)

	listeners, _ := cfg.Listeners()
	ifAddrs := listen.InterfaceAddrs()
	relay4, relay6, err := relayIPs(cfg, ifAddrs)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := checkHostAddrs(cfg, listeners, hostAddrs(ifAddrs), nonlocalBind); err != nil {
		return &exitError{code: 2, err: err}
	}
	logRelayAddrs(cfg, relay4, relay6, ifAddrs, log)
	if cfg.TLS.Cert != "" {
		st.certs, err = listen.LoadCerts(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("tls.cert/tls.key: %w", err)}
		}
		go st.certs.Watch(ctx, 10*time.Second,
			func(err error) { log.Error("TLS certificate reload failed; serving the old one", "err", err) },
			func() { log.Info("TLS certificate reloaded from disk") })
	}
	run, err := start(ctx, cfg, listeners, st.certs, relay4, relay6, ifAddrs, st, log)
	if err != nil {
		return err
	}
	srv, bound := run.srv, run.bound
	defer srv.Close()
	defer run.node.leave()
	var draining atomic.Bool
	if cfg.HTTP.Listen != "" {
		pol, err := httpapi.NewPolicy(cfg.HTTP, cfg.Auth.MaxTTL)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		var place func(string) []creds.Target
		if run.node != nil {
			place = run.node.place(cfg.Cluster.PlacementCount)
		}
		st.api, err = httpapi.New(httpapi.Options{
			Credentials: st.authn.Snapshot,
			Host:        advertisedHost(cfg),
			Listeners:   bound,
			Place:       place,
			Log:         log,
		}, pol)
		if err != nil {
			return err
		}
		if len(cfg.HTTP.APIKeys) == 0 && !cfg.HTTP.AllowAnonymousOrigins {
			log.Warn("credentials API: no http.api-keys, so POST " + httpapi.Path + " refuses every call until keys are configured")
		}
		if !st.authn.Snapshot().HasSecrets() {
			log.Warn("credentials API: no auth.secrets to sign with, so POST " + httpapi.Path + " answers 503")
		}
		adminAPI, err := run.admin(cfg, log)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		st.admin = adminAPI
		hs, err := startHTTP(ctx, cfg.HTTP.Listen, httpHandler(httpDeps{
			cfg: cfg, srv: srv, authn: st.authn, bound: bound, log: log, draining: &draining,
			creds: st.api, metrics: run.metrics, admin: adminAPI,
		}), log)
		if err != nil {
			return err
		}
		defer func() {
			if err := hs.shutdown(5 * time.Second); err != nil {
				log.Warn("http shutdown", "err", err)
			}
		}()
		log.Info("http listening", "addr", hs.addr.String())
	}
	attrs := []any{"version", Version(), "realm", cfg.Realm}
	for _, l := range bound {
		attrs = append(attrs, "listen", l.String())
	}
	attrs = append(attrs, "relay_v4", relay4, "relay_v6", relay6, "relay_ports", cfg.Relay.Ports)
	log.Info("ferry ready", attrs...)
	if !cfg.Relay.AllowLoopbackPeers && len(cfg.Relay.AllowedPeers) == 0 {
		log.Info("peer policy: relaying only to public addresses (see relay.allowed-peers)")
	}
	if st.generated != "" {
		if err := st.banner(e, bound); err != nil {
			return err
		}
	}

	sigs, stop := e.signals()
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return shutdown(srv, log)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				st.reload(cmd, e, log)
				continue
			}
			draining.Store(true)
			log.Info("shutting down", "signal", sig.String(), "allocations", srv.AllocationCount())
			if sig == syscall.SIGTERM {
				drain(ctx, srv, cfg.DrainTimeout, sigs, func() { st.reload(cmd, e, log) }, log)
			}
			return shutdown(srv, log)
		}
	}
}

func shutdown(srv turnServer, log *slog.Logger) error {
	if err := srv.Close(); err != nil {
		log.Warn("close", "err", err)
	}
	log.Info("ferry stopped")
	return nil
}

// snapshot builds the credential snapshot, adding the run's generated secret
// when the configuration has no users or secrets.
func (st *runtimeState) snapshot(cfg config.Config) (*auth.Snapshot, error) {
	secrets := cfg.Auth.Secrets
	if len(cfg.Auth.Users) == 0 && len(secrets) == 0 && st.generated != "" {
		secrets = []string{st.generated}
	}
	s, err := auth.NewSnapshot(cfg.Realm, cfg.Auth.Users, secrets)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return s, nil
}

// reload re-reads the configuration on SIGHUP and swaps in new users,
// secrets, API keys, the admin token and the TLS certificate. A bad
// configuration is logged and the old one keeps serving. Settings that need
// a restart are reported.
func (st *runtimeState) reload(cmd *cobra.Command, e *env, log *slog.Logger) {
	cfg, _, err := loadConfig(cmd, e)
	if err != nil {
		log.Error("reload refused; the running configuration stays", "err", err)
		return
	}
	snap, err := st.snapshot(cfg)
	if err != nil {
		log.Error("reload refused; the running configuration stays", "err", err)
		return
	}
	if snap.Empty() {
		log.Error("reload refused: the new configuration has no auth.users and no auth.secrets, so every client would be refused; the running configuration stays")
		return
	}
	var pol *httpapi.Policy
	if st.api != nil {
		if pol, err = httpapi.NewPolicy(cfg.HTTP, cfg.Auth.MaxTTL); err != nil {
			log.Error("reload refused; the running configuration stays", "err", err)
			return
		}
	}
	if st.certs != nil {
		if err := st.certs.Reload(); err != nil {
			log.Error("TLS certificate reload failed; serving the old one", "err", err)
		}
	}
	old := st.authn.Swap(snap)
	if st.onCredentials != nil {
		st.onCredentials(snap)
	}
	attrs := []any{"auth", auth.Diff(old, snap)}
	if st.api != nil {
		attrs = append(attrs, "http", httpapi.Diff(st.api.Swap(pol), pol))
	}
	if st.admin != nil {
		st.admin.SetToken(cfg.HTTP.AdminToken)
		attrs = append(attrs, "admin_token", tokenChange(st.cfg.HTTP.AdminToken, cfg.HTTP.AdminToken))
	}
	st.cfg.HTTP.AdminToken = cfg.HTTP.AdminToken
	log.Info("configuration reloaded", attrs...)
	if fmt.Sprint(cfg.Listen) != fmt.Sprint(st.cfg.Listen) || fmt.Sprint(cfg.Relay) != fmt.Sprint(st.cfg.Relay) ||
		cfg.Realm != st.cfg.Realm || cfg.HTTP.Listen != st.cfg.HTTP.Listen ||
		cfg.Quota != st.cfg.Quota || cfg.Limits != st.cfg.Limits ||
		fmt.Sprint(cfg.ProxyProtocol) != fmt.Sprint(st.cfg.ProxyProtocol) {
		log.Warn("listen, relay, realm, quota, limits, proxy-protocol and http.listen changes take effect only after a restart")
	}
}

// tokenChange says how a secret changed without showing it.
func tokenChange(old, cur string) string {
	switch {
	case old == cur:
		return "unchanged"
	case cur == "":
		return "removed (admin API off)"
	case old == "":
		return "set (admin API on)"
	}
	return "replaced"
}

// banner prints the ready-to-paste iceServers for the generated secret.
func (st *runtimeState) banner(e *env, bound []config.Listener) error {
	host := advertisedHost(st.cfg)
	c, err := creds.Mint(st.authn.Snapshot(), "", time.Hour, time.Hour, time.Now(), []creds.Target{{Host: host, Listeners: bound}})
	if err != nil {
		return fmt.Errorf("mint start-up credential: %w", err)
	}
	b, err := json.MarshalIndent(map[string]any{"iceServers": c.ICEServers}, "", "  ")
	if err != nil {
		return err
	}
	var where string
	if path, err := saveRunSecret(e.environ, st.generated); err == nil {
		where = fmt.Sprintf(`It is saved in %s (readable by you only), so that you can mint
more credentials against this server:

  ferry creds --auth-secret "$(cat %s)" --user alice --json`, path, path)
	} else {
		where = fmt.Sprintf(`It could not be saved (%v), so here it is; mint more credentials
against this server with:

  ferry creds --auth-secret %q --user alice --json`, err, st.generated)
	}
	fmt.Fprintf(e.stdout, `
No users or secrets are configured, so ferry made a shared secret for this run.
%s

Paste this into new RTCPeerConnection(...) or new Peer({config: ...}); it is
valid until %s. Configure auth.secrets (or --auth-secret) for real use.

%s

`, where, c.ExpiresAt.Format(time.RFC3339), b)
	return nil
}

// saveRunSecret writes the run's generated secret to a file only the user
// can read, in the user's runtime directory (XDG_RUNTIME_DIR), else cache
// directory (XDG_CACHE_HOME, HOME/.cache), found in environ; it returns the
// file's path. The next run without a secret replaces it.
func saveRunSecret(environ []string, secret string) (string, error) {
	get := func(k string) string {
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	dir := get("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = get("XDG_CACHE_HOME")
	}
	if dir == "" && get("HOME") != "" {
		dir = filepath.Join(get("HOME"), ".cache")
	}
	if dir == "" {
		return "", errors.New("no XDG_RUNTIME_DIR, XDG_CACHE_HOME or HOME")
	}
	dir = filepath.Join(dir, "ferry")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "run-secret")
	tmp, err := os.CreateTemp(dir, "run-secret.*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

func randomSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// relayIPs returns the configured relay bind addresses, detecting a family
// that is not configured when relay.ip is empty.
func relayIPs(cfg config.Config, ifAddrs []netip.Addr) (v4, v6 netip.Addr, err error) {
	v4, v6, err = cfg.Relay.RelayIPs()
	if err != nil {
		return v4, v6, fmt.Errorf("relay.ip: %w", err)
	}
	if len(cfg.Relay.IP) == 0 {
		v4, v6 = listen.DetectRelayIPs(ifAddrs)
	}
	return v4, v6, nil
}
