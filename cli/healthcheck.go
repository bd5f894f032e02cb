package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
	"github.com/spf13/cobra"

	"github.com/ferryrtc/ferry/config"
)

func newHealthcheck(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 if the local ferry answers, 1 if not (Docker HEALTHCHECK)",
		Long: `Check that the ferry configured like this one is alive, for Docker's
HEALTHCHECK and other supervisors (the image has no shell or curl).

With http.listen set it GETs http://<http.listen>/healthz; otherwise it sends
a STUN Binding request to the first UDP listener. A wildcard address
(0.0.0.0, [::]) is checked on loopback. It reads the same configuration
(file, FERRY_* environment, flags) as 'ferry serve'. Exit 0: healthy; 1:
not healthy or not checkable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(cmd, e)
			if err != nil {
				return &exitError{code: 1, err: err} // Docker reserves exit code 2
			}
			timeout, _ := cmd.Flags().GetDuration("timeout")
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			what, err := healthcheck(ctx, cfg)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("unhealthy: %w", err)}
			}
			fmt.Fprintln(e.stdout, "healthy:", what)
			return nil
		},
	}
	addConfigFlags(cmd)
	cmd.Flags().Duration("timeout", 3*time.Second, "give up after this long")
	return cmd
}

// healthcheck checks cfg's ferry and says what it checked.
func healthcheck(ctx context.Context, cfg config.Config) (string, error) {
	if cfg.HTTP.Listen != "" {
		url := "http://" + loopbackHostPort(cfg.HTTP.Listen) + "/healthz"
		return "GET " + url, checkHTTP(ctx, url)
	}
	ls, err := cfg.Listeners()
	if err != nil {
		return "", err
	}
	for _, l := range ls {
		if l.Transport != config.UDP {
			continue
		}
		if l.Addr.Port() == 0 {
			return "", fmt.Errorf("UDP listener %s has port 0, so its port is unknown; set http.listen to check /healthz", l)
		}
		target := netip.AddrPortFrom(loopbackFor(l.Addr.Addr()), l.Addr.Port())
		return "STUN Binding to " + target.String(), checkSTUN(ctx, target)
	}
	return "", errors.New("nothing to check: neither http.listen nor a UDP listener is configured")
}

// loopbackFor maps a wildcard address to loopback of its family.
func loopbackFor(a netip.Addr) netip.Addr {
	switch {
	case a.IsUnspecified() && a.Is4():
		return netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case a.IsUnspecified():
		return netip.IPv6Loopback()
	}
	return a
}

// loopbackHostPort rewrites a wildcard or empty host of HOST:PORT to
// loopback.
func loopbackHostPort(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	if host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(loopbackFor(ip).String(), port)
	}
	return hostport
}

func checkHTTP(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return nil
}

// checkSTUN sends a Binding request to target, again every 500 ms, until a
// success response with its transaction ID arrives or ctx ends.
func checkSTUN(ctx context.Context, target netip.AddrPort) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", target.String())
	if err != nil {
		return fmt.Errorf("STUN %s: %w", target, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return fmt.Errorf("STUN %s: build request: %w", target, err)
	}
	buf := make([]byte, 1500)
	for {
		if _, err := conn.Write(req.Raw); err != nil {
			return fmt.Errorf("STUN %s: %w", target, err)
		}
		retry := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(retry) {
			_ = conn.SetReadDeadline(retry)
			if dl, ok := ctx.Deadline(); ok && dl.Before(retry) {
				_ = conn.SetReadDeadline(dl)
			}
			n, err := conn.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("STUN %s: no answer: %w", target, ctx.Err())
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("STUN %s: %w", target, err)
			}
			res := &stun.Message{Raw: buf[:n]}
			if res.Decode() != nil || res.TransactionID != req.TransactionID {
				continue
			}
			if res.Type != stun.BindingSuccess {
				return fmt.Errorf("STUN %s: answered %s", target, res.Type)
			}
			return nil
		}
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
			return fmt.Errorf("STUN %s: no answer: %w", target, context.DeadlineExceeded)
		}
	}
}
