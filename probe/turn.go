package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/ferryrtc/ferry/auth"
)

// probeChannel is the channel number the TURN probe binds.
const probeChannel = 0x4000

// restTTL is the lifetime of a credential minted from a REST secret.
const restTTL = 10 * time.Minute

// TURNOptions configures TURN.
type TURNOptions struct {
	// Target is the server.
	Target Target
	// Username and Password are long-term credentials; or
	Username, Password string
	// Secret is a TURN REST shared secret: the probe mints a credential
	// ("<expiry>:<Username>", or "<expiry>" without a Username).
	Secret string
	// Realm overrides the realm the server announces.
	Realm string
	// Peer, if set ("host:port"), is the peer the round trip goes to; it
	// must echo the datagrams it receives. Empty: a second local socket of
	// the probe is the peer.
	Peer string
	// Timeout bounds each exchange; 0: DefaultTimeout.
	Timeout time.Duration
	// Now is the clock for minting REST credentials; nil: time.Now.
	Now func() time.Time
}

// TURNReport is what TURN found.
type TURNReport struct {
	Target   string `json:"target"`
	Server   string `json:"server"`
	Local    string `json:"local"`
	Username string `json:"username"`
	Realm    string `json:"realm,omitempty"`
	Relayed  string `json:"relayed,omitempty"`
	Mapped   string `json:"mapped,omitempty"`
	// LifetimeSeconds is the allocation lifetime the server granted.
	LifetimeSeconds int `json:"lifetime_s,omitempty"`
	// Peer is the peer address the relay saw or was sent to.
	Peer string `json:"peer,omitempty"`
	// OK is true when every step succeeded.
	OK    bool  `json:"ok"`
	Steps Steps `json:"steps"`
	// FailedStep, Cause and Fix say, when the probe failed, which step
	// failed, why (naming the server setting involved where there is one)
	// and what to do about it.
	FailedStep string `json:"failed_step,omitempty"`
	Cause      string `json:"cause,omitempty"`
	Fix        string `json:"fix,omitempty"`
}

// TURN probes a TURN server: challenge, allocate, permission, a round trip
// through the allocation with indications and with a channel, release. The
// error names the first failed step; the report is returned either way, and
// says then why the step failed and what to do (Cause, Fix).
func TURN(ctx context.Context, o TURNOptions) (*TURNReport, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &turnProbe{o: o, rep: &TURNReport{Target: o.Target.String()}}
	err := t.probe(ctx)
	rep := t.rep
	rep.OK = err == nil
	if err != nil {
		rep.FailedStep = t.failed
		rep.Cause, rep.Fix = diagnose(failure{
			step: t.failed, err: err, rest: o.Secret != "", user: rep.Username,
			server: t.server, peer: t.peerAddr, selfPeer: !t.peer.IsValid(), relayed: t.alloc.Relayed,
		})
	}
	return rep, err
}

// probe is TURN but for the diagnosis.
func (t *turnProbe) probe(ctx context.Context) error {
	o, rep := t.o, t.rep
	cred := Credentials{Username: o.Username, Password: o.Password, Realm: o.Realm}
	switch {
	case o.Secret != "":
		cred.Username, cred.Password = auth.Mint(o.Secret, o.Username, restTTL, o.Now())
	case o.Username == "" || o.Password == "":
		return errors.New("a TURN probe needs --user and --password, or --secret")
	}
	rep.Username = cred.Username
	server, err := resolve(ctx, o.Target.Host, o.Target.Port)
	if err != nil {
		return err
	}
	t.server = server
	rep.Server = server.String()
	if o.Peer != "" {
		host, port, err := net.SplitHostPort(o.Peer)
		if err != nil {
			return fmt.Errorf("--peer %q is not host:port: %w", o.Peer, err)
		}
		pt, err := ParseTarget("turn://" + net.JoinHostPort(host, port))
		if err != nil {
			return fmt.Errorf("--peer %q: %w", o.Peer, err)
		}
		if t.peer, err = resolve(ctx, pt.Host, pt.Port); err != nil {
			return fmt.Errorf("--peer: %w", err)
		}
	}
	conn, err := listenFor(server)
	if err != nil {
		return err
	}
	defer conn.Close()
	rep.Local = addrOf(conn.LocalAddr()).String()
	t.c = NewClient(conn, server, cred, o.Timeout)
	return t.run(ctx)
}

type turnProbe struct {
	o      TURNOptions
	rep    *TURNReport
	c      *Client
	server netip.AddrPort
	peer   netip.AddrPort // given peer; zero: self
	self   *net.UDPConn   // the second local socket (self mode)
	alloc  Allocation
	// peerAddr is the address the round trip's peer is seen at, once
	// known; failed is the step that failed.
	peerAddr netip.Addr
	failed   string
}

// step runs f as a named step, recording its status and time.
func (t *turnProbe) step(ctx context.Context, name string, f func() (string, error)) error {
	if err := ctx.Err(); err != nil {
		t.rep.Steps.add(name, StatusSkipped, 0, err.Error())
		t.failed = name
		return err
	}
	start := time.Now()
	detail, err := f()
	if err != nil {
		t.rep.Steps.add(name, statusOf(err), time.Since(start), err.Error())
		t.failed = name
		return fmt.Errorf("%s: %w", name, err)
	}
	t.rep.Steps.add(name, StatusOK, time.Since(start), detail)
	return nil
}

func (t *turnProbe) run(ctx context.Context) error {
	steps := []struct {
		name string
		f    func() (string, error)
	}{
		{stepChallenge, t.challenge},
		{stepAllocate, t.allocate},
		{stepPermission, t.permission},
		{stepRelay, t.indications},
		{stepChannel, t.channel},
		{stepRelease, t.release},
	}
	defer func() {
		if t.self != nil {
			_ = t.self.Close()
		}
	}()
	for i, s := range steps {
		if err := t.step(ctx, s.name, s.f); err != nil {
			for _, rest := range steps[i+1:] {
				t.rep.Steps.add(rest.name, StatusSkipped, 0, "")
			}
			if i > 1 && i < len(steps)-1 { // allocated: do not leave it behind
				_ = t.c.Release()
			}
			return err
		}
	}
	return nil
}

func (t *turnProbe) challenge() (string, error) {
	realm, err := t.c.Challenge()
	if err != nil {
		return "", err
	}
	t.rep.Realm = t.c.Realm()
	return fmt.Sprintf("401 with realm %q and a nonce", realm), nil
}

func (t *turnProbe) allocate() (string, error) {
	a, err := t.c.Allocate()
	if err != nil {
		return "", err
	}
	t.alloc = a
	t.rep.Relayed, t.rep.LifetimeSeconds = a.Relayed.String(), int(a.Lifetime/time.Second)
	if a.Mapped.IsValid() {
		t.rep.Mapped = a.Mapped.String()
	}
	return fmt.Sprintf("relayed %s, mapped %s, lifetime %s", a.Relayed, a.Mapped, a.Lifetime), nil
}

func (t *turnProbe) permission() (string, error) {
	if t.peer.IsValid() {
		t.rep.Peer = t.peer.String()
		t.peerAddr = t.peer.Addr()
		if err := t.c.CreatePermission(t.peer.Addr()); err != nil {
			return "", err
		}
		return "for peer " + t.peer.Addr().String(), nil
	}
	// Self mode: a second socket is the peer; the permission is for the
	// address the server sees it from.
	self, err := listenFor(t.server)
	if err != nil {
		return "", err
	}
	t.self = self
	b, err := Binding(self, t.server, 0, t.o.Timeout)
	if err != nil {
		return "", fmt.Errorf("binding from the peer socket: %w", err)
	}
	t.peerAddr = b.Mapped.Addr()
	if err := t.c.CreatePermission(b.Mapped.Addr()); err != nil {
		return "", err
	}
	return fmt.Sprintf("for %s (the probe's second socket %s, seen as %s)", b.Mapped.Addr(), addrOf(self.LocalAddr()), b.Mapped), nil
}

// indications relays a round trip with Send and Data indications.
func (t *turnProbe) indications() (string, error) {
	return t.roundTrip(0)
}

// channel binds a channel to the peer and relays a round trip over it.
func (t *turnProbe) channel() (string, error) {
	peer, err := netip.ParseAddrPort(t.rep.Peer)
	if err != nil {
		return "", errors.New("no peer address from the relay round trip")
	}
	if err := t.c.ChannelBind(probeChannel, peer); err != nil {
		return "", err
	}
	return t.roundTrip(probeChannel)
}

func (t *turnProbe) release() (string, error) {
	if err := t.c.Release(); err != nil {
		return "", err
	}
	return "allocation deleted", nil
}

// roundTrip sends a token through the allocation and waits for it to come
// back: in self mode peer -> relay -> client -> relay -> peer, with a given
// peer client -> relay -> peer (echo) -> relay -> client. ch 0 uses
// indications, else the bound channel.
func (t *turnProbe) roundTrip(ch uint16) (string, error) {
	token := make([]byte, 8)
	_, _ = rand.Read(token)
	ping := []byte("ferry-probe ping " + hex.EncodeToString(token))
	pong := []byte("ferry-probe pong " + hex.EncodeToString(token))
	deadline := time.Now().Add(t.o.Timeout)
	via := "indications"
	if ch != 0 {
		via = fmt.Sprintf("channel %#x", ch)
	}
	send := func(peer netip.AddrPort, b []byte) error {
		if ch != 0 {
			return t.c.SendChannel(ch, b)
		}
		return t.c.Send(peer, b)
	}
	if t.peer.IsValid() {
		for time.Now().Before(deadline) {
			if err := send(t.peer, ping); err != nil {
				return "", err
			}
			d, err := t.c.Receive(minTime(deadline, time.Now().Add(initialRTO)))
			if errors.Is(err, ErrTimeout) {
				continue
			}
			if err != nil {
				return "", err
			}
			if d.From == t.peer && string(d.Payload) == string(ping) {
				return fmt.Sprintf("%s echoed via %s", t.peer, via), nil
			}
		}
		return "", fmt.Errorf("peer %s did not echo via %s (is it an echo server, and does its firewall admit %s?): %w", t.peer, via, t.alloc.Relayed, ErrTimeout)
	}
	relayed := net.UDPAddrFromAddrPort(t.alloc.Relayed)
	var from netip.AddrPort
	for from = (netip.AddrPort{}); !from.IsValid(); {
		if !time.Now().Before(deadline) {
			return "", fmt.Errorf("nothing the peer socket sent to %s arrived via %s: %w", t.alloc.Relayed, via, ErrTimeout)
		}
		if _, err := t.self.WriteTo(ping, relayed); err != nil {
			return "", fmt.Errorf("peer socket send to %s: %w", t.alloc.Relayed, err)
		}
		d, err := t.c.Receive(minTime(deadline, time.Now().Add(initialRTO)))
		if errors.Is(err, ErrTimeout) {
			continue
		}
		if err != nil {
			return "", err
		}
		if string(d.Payload) == string(ping) && (ch == 0 || d.Channel == ch) {
			from = d.From
		}
	}
	t.rep.Peer = from.String()
	buf := make([]byte, bufSize)
	for time.Now().Before(deadline) {
		if err := send(from, pong); err != nil {
			return "", err
		}
		_ = t.self.SetReadDeadline(minTime(deadline, time.Now().Add(initialRTO)))
		for {
			n, src, err := t.self.ReadFrom(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return "", err
			}
			if addrOf(src) == t.alloc.Relayed && string(buf[:n]) == string(pong) {
				return fmt.Sprintf("peer %s -> relay %s -> client -> relay -> peer, via %s", from, t.alloc.Relayed, via), nil
			}
		}
	}
	return "", fmt.Errorf("the reply via %s to %s never reached the peer socket: %w", via, from, ErrTimeout)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
