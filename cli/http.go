package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ferryrtc/ferry/admin"
	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/creds"
	"github.com/ferryrtc/ferry/httpapi"
	"github.com/ferryrtc/ferry/testpage"
)

// httpDeps is what the HTTP listener's handlers are built from.
type httpDeps struct {
	cfg      config.Config
	srv      turnServer
	authn    *auth.Store
	bound    []config.Listener
	log      *slog.Logger
	draining *atomic.Bool
	// creds serves the credentials API (httpapi.Path); nil: not mounted.
	creds http.Handler
	// metrics serves /metrics; nil: not mounted.
	metrics http.Handler
	// admin serves the admin API (admin.Prefix); nil: not mounted.
	admin *admin.Handler
}

// httpHandler mounts every HTTP endpoint ferry serves on http.listen.
func httpHandler(d httpDeps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if d.draining.Load() || d.srv.Draining() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, "draining")
			return
		}
		if err := d.srv.Listening(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintln(w, "not listening:", err)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	if d.metrics != nil {
		mux.Handle("GET /metrics", d.metrics)
	}
	if d.admin != nil {
		mux.Handle(admin.Prefix, d.admin)
	}
	if d.creds != nil {
		mux.Handle(httpapi.Path, d.creds)
	}
	if d.cfg.HTTP.TestPage {
		testpage.Mount(mux, testpage.Options{Version: Version(), Realm: d.cfg.Realm, URLs: listenerURLs(d.cfg, d.bound),
			Stats: d.srv.Stats, Draining: func() bool { return d.draining.Load() || d.srv.Draining() }})
	}
	return mux
}

// listenerURLs are the stun:, turn: and turns: URLs of ferry's listeners
// as the credentials API hands them out.
func listenerURLs(cfg config.Config, bound []config.Listener) []string {
	stun, turn := creds.URLs(advertisedHost(cfg), bound)
	return append(stun, turn...)
}

// httpServer is the running HTTP listener.
type httpServer struct {
	srv  *http.Server
	addr net.Addr
	done chan error
}

// startHTTP opens http.listen and serves h on it.
func startHTTP(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (*httpServer, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, &exitError{code: 1, err: fmt.Errorf("http.listen %s: %w", addr, err)}
	}
	hs := &httpServer{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		addr: ln.Addr(),
		done: make(chan error, 1),
	}
	go func() {
		err := hs.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		hs.done <- err
	}()
	return hs, nil
}

// shutdown stops accepting and waits up to timeout for requests in flight.
func (hs *httpServer) shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := hs.srv.Shutdown(ctx)
	if err != nil {
		_ = hs.srv.Close()
	}
	return errors.Join(err, <-hs.done)
}
