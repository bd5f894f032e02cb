package listen

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/ferryrtc/ferry/config"
)

// Certs holds the TLS certificate served by tls:// and dtls:// listeners.
// Every handshake reads the current one, so Reload (on SIGHUP, or when the
// files change on disk) takes effect for the next client without touching
// live connections.
type Certs struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]

	mu      sync.Mutex // serialises reloads
	modTime time.Time
}

// LoadCerts reads the certificate and key files.
func LoadCerts(certFile, keyFile string) (*Certs, error) {
	c := &Certs{certFile: certFile, keyFile: keyFile}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again; on error the old certificate stays.
func (c *Certs) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s / key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	c.modTime = c.latestMod()
	return nil
}

func (c *Certs) latestMod() time.Time {
	var t time.Time
	for _, f := range []string{c.certFile, c.keyFile} {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

// ReloadIfChanged reloads when either file's modification time moved.
func (c *Certs) ReloadIfChanged() (bool, error) {
	c.mu.Lock()
	changed := c.latestMod().After(c.modTime)
	c.mu.Unlock()
	if !changed {
		return false, nil
	}
	return true, c.Reload()
}

// Watch polls the files every interval until ctx ends, reloading on change.
func (c *Certs) Watch(ctx context.Context, interval time.Duration, onErr func(error), onReload func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ok, err := c.ReloadIfChanged()
			if err != nil && onErr != nil {
				onErr(err)
			} else if ok && onReload != nil {
				onReload()
			}
		}
	}
}

// Get returns the current certificate (tls.Config.GetCertificate).
func (c *Certs) Get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// TLSConfig returns a server tls.Config serving the current certificate.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.Get}
}

// TLS opens a TLS listener on l's address serving certs.
func TLS(ctx context.Context, l config.Listener, certs *Certs) (net.Listener, error) {
	ln, err := TCP(ctx, l)
	if err != nil {
		return nil, err
	}
	return tls.NewListener(ln, certs.TLSConfig()), nil
}

// DTLS opens a DTLS listener on l's address serving certs. pion/dtls opens
// the UDP socket itself; it is still opened here, by the caller of the
// server, like every other socket.
func DTLS(l config.Listener, certs *Certs) (net.Listener, error) {
	laddr := net.UDPAddrFromAddrPort(l.Addr)
	ln, err := dtls.ListenWithOptions(l.Network(), laddr,
		dtls.WithGetCertificate(func(*dtls.ClientHelloInfo) (*tls.Certificate, error) {
			return certs.cur.Load(), nil
		}),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
	)
	if err != nil {
		return nil, portError(l, err)
	}
	return ln, nil
}
