package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

func TestDiagnose(t *testing.T) {
	server := netip.MustParseAddrPort("203.0.113.10:3478")
	public := netip.MustParseAddr("198.51.100.7")
	relayed := netip.MustParseAddrPort("203.0.113.10:50000")
	resp := func(m stun.Method, code int, reason string) error {
		return fmt.Errorf("%s: %w", m, &ErrorResponse{Method: m, Code: code, Reason: reason})
	}
	tests := []struct {
		name       string
		f          failure
		cause, fix []string // substrings
	}{
		{"draining", failure{step: stepAllocate, err: resp(stun.MethodAllocate, 508, "Server Draining")},
			[]string{"server is draining (shutting down or upgrading)"}, []string{"try another server"}},
		{"no relay port", failure{step: stepAllocate, err: resp(stun.MethodAllocate, 508, "Insufficient Capacity")},
			[]string{"no free relay port / capacity", "relay.ports", "quota.total-allocations"}, []string{"relay socket not bound"}},
		{"permission quota", failure{step: stepPermission, err: resp(stun.MethodCreatePermission, 508, "Insufficient Capacity")},
			[]string{"quota.permissions"}, []string{"quota.permissions"}},
		{"channel quota", failure{step: stepChannel, err: resp(stun.MethodChannelBind, 508, "Insufficient Capacity")},
			[]string{"quota.channels"}, []string{"quota.channels"}},
		{"user quota", failure{step: stepAllocate, user: "1767323045:alice", err: resp(stun.MethodAllocate, 486, "Allocation Quota Reached")},
			[]string{"allocation quota reached", `user "alice"`, "quota.user-allocations", "quota.user-bytes"}, []string{"quota.user-allocations"}},
		{"wrong password", failure{step: stepAllocate, err: resp(stun.MethodAllocate, 401, "Unauthorized")},
			[]string{"wrong credentials", "password"}, []string{"auth.users", "--realm"}},
		{"REST secret or clock", failure{step: stepAllocate, rest: true, err: resp(stun.MethodAllocate, 401, "Unauthorized")},
			[]string{"wrong credentials", "auth.secrets", "clocks"}, []string{"--secret", "timedatectl"}},
		{"stale nonce", failure{step: stepAllocate, err: resp(stun.MethodAllocate, 438, "Stale Nonce")},
			[]string{"stale nonce"}, []string{"limits.bind-nonces", "cluster.nonce-secret"}},
		{"loopback peer 403", failure{step: stepPermission, selfPeer: true, peer: netip.MustParseAddr("127.0.0.1"), err: resp(stun.MethodCreatePermission, 403, "Forbidden")},
			[]string{causePeerPolicy, "127.0.0.1 is a loopback address"}, []string{"relay.allow-loopback-peers: true", "--peer"}},
		{"private peer 403", failure{step: stepChannel, peer: netip.MustParseAddr("192.168.1.20"), err: resp(stun.MethodChannelBind, 403, "Forbidden")},
			[]string{causePeerPolicy, "private (RFC 1918)"}, []string{"add 192.168.1.20/32 to the server's relay.allowed-peers"}},
		{"CGNAT peer 403", failure{step: stepPermission, selfPeer: true, peer: netip.MustParseAddr("100.72.1.2"), err: resp(stun.MethodCreatePermission, 403, "")},
			[]string{causePeerPolicy, "carrier-grade NAT"}, []string{"100.72.1.2/32"}},
		{"ULA peer 403", failure{step: stepPermission, peer: netip.MustParseAddr("fd00::5"), err: resp(stun.MethodCreatePermission, 403, "")},
			[]string{causePeerPolicy, "unique local"}, []string{"fd00::5/128"}},
		{"public peer 403", failure{step: stepPermission, peer: public, err: resp(stun.MethodCreatePermission, 403, "Forbidden")},
			[]string{causePeerPolicy, "relay.denied-peers"}, []string{"relay.allowed-peers"}},
		{"loopback peer silent", failure{step: stepRelay, selfPeer: true, peer: netip.MustParseAddr("127.0.0.1"), server: server, relayed: relayed, err: ErrTimeout},
			[]string{causePeerPolicy, "never arrived", "loopback"}, []string{"relay.allow-loopback-peers"}},
		{"private relay address", failure{step: stepRelay, selfPeer: true, peer: public, server: server, relayed: netip.MustParseAddrPort("10.0.0.5:50000"), err: ErrTimeout},
			[]string{"advertises the relay address 10.0.0.5:50000", "private"}, []string{"relay.external-ip"}},
		{"relay ports blocked", failure{step: stepChannel, peer: public, server: server, relayed: relayed, err: ErrTimeout},
			[]string{"firewall", "relay ports"}, []string{"relay.ports", "echoes"}},
		{"server silent", failure{step: stepChallenge, server: server, err: fmt.Errorf("Allocate to %s: %w", server, ErrTimeout)},
			[]string{"no answer from 203.0.113.10:3478", "firewall drops UDP to port 3478"}, []string{"ferry ready", "UDP port 3478"}},
		{"STUN server silent", failure{step: stepBinding, server: server, err: ErrTimeout},
			[]string{"no answer"}, []string{"UDP port 3478"}},
		{"silent after the challenge", failure{step: stepAllocate, server: server, err: ErrTimeout},
			[]string{"no answer to the allocate request"}, []string{"limits.allocate-rate"}},
		{"name does not resolve", failure{err: fmt.Errorf("resolve x: %w", &net.DNSError{Name: "turn.invalid", Err: "no such host", IsNotFound: true})},
			[]string{"turn.invalid does not resolve"}, []string{"host name"}},
		{"no route", failure{server: server, err: fmt.Errorf("no route: %w", syscall.ENETUNREACH)},
			[]string{"no route to 203.0.113.10:3478"}, []string{"network connection"}},
		{"interrupted", failure{step: stepAllocate, err: context.Canceled}, []string{"interrupted"}, nil},
		{"redirected", failure{step: stepAllocate, err: resp(stun.MethodAllocate, 300, "Try Alternate")},
			[]string{"another node"}, []string{"other servers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cause, fix := diagnose(tt.f)
			for _, s := range tt.cause {
				if !strings.Contains(cause, s) {
					t.Errorf("cause %q lacks %q", cause, s)
				}
			}
			for _, s := range tt.fix {
				if !strings.Contains(fix, s) {
					t.Errorf("fix %q lacks %q", fix, s)
				}
			}
			if len(tt.fix) == 0 && fix != "" {
				t.Errorf("fix %q, want none", fix)
			}
		})
	}
	if c, f := diagnose(failure{}); c != "" || f != "" {
		t.Errorf("no error diagnosed as %q, %q", c, f)
	}
}

func TestAddrClass(t *testing.T) {
	for in, want := range map[string]string{
		"8.8.8.8": "", "2001:4860::8888": "", "127.0.0.2": "loopback", "::1": "loopback",
		"10.1.2.3": "private (RFC 1918)", "172.16.0.1": "private (RFC 1918)", "192.168.0.1": "private (RFC 1918)",
		"100.64.0.1": "carrier-grade NAT (100.64.0.0/10)", "100.127.255.254": "carrier-grade NAT (100.64.0.0/10)", "100.128.0.1": "",
		"fd12::1": "unique local (fc00::/7)", "169.254.1.1": "link-local", "fe80::1": "link-local",
		"::ffff:10.0.0.1": "private (RFC 1918)",
	} {
		if got := addrClass(netip.MustParseAddr(in)); got != want {
			t.Errorf("addrClass(%s) = %q, want %q", in, got, want)
		}
	}
}

// The probe against a real ferry (its data plane in-process on loopback)
// names the failed step, the cause and a fix.
func TestTURNProbeDiagnosis(t *testing.T) {
	// busyPort holds the only relay port of a server, so that binding a
	// relay socket fails.
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(int(addrOf(busy.LocalAddr()).Port()))
	tests := []struct {
		name string
		srv  serverOpts
		// hold allocates as testUser before the probe.
		hold  bool
		opts  TURNOptions
		step  string
		cause string
		fix   string
	}{
		{name: "wrong password", srv: serverOpts{allowLoopback: true}, opts: TURNOptions{Username: testUser, Password: "nope"},
			step: stepAllocate, cause: "wrong credentials", fix: "auth.users"},
		{name: "wrong REST secret", srv: serverOpts{allowLoopback: true}, opts: TURNOptions{Username: "probe", Secret: "not-the-secret"},
			step: stepAllocate, cause: "auth.secrets", fix: "--secret"},
		{name: "REST clock an hour behind", srv: serverOpts{allowLoopback: true},
			opts: TURNOptions{Username: "probe", Secret: testSecret, Now: func() time.Time { return time.Now().Add(-time.Hour) }},
			step: stepAllocate, cause: "clocks of this host and the server differ", fix: "timedatectl"},
		{name: "user quota", srv: serverOpts{allowLoopback: true, userAllocations: 1}, hold: true, opts: TURNOptions{Username: testUser, Password: testPass},
			step: stepAllocate, cause: causeQuota + ` for user "alice"`, fix: "quota.user-allocations"},
		{name: "draining", srv: serverOpts{allowLoopback: true, drain: true}, opts: TURNOptions{Username: testUser, Password: testPass},
			step: stepAllocate, cause: causeDraining, fix: "try another server"},
		{name: "no relay port", srv: serverOpts{allowLoopback: true, relayPorts: busyPort + "-" + busyPort}, opts: TURNOptions{Username: testUser, Password: testPass},
			step: stepAllocate, cause: causeCapacity, fix: "relay.ports"},
		{name: "peer denied", srv: serverOpts{denied: []string{"127.0.0.0/8"}}, opts: TURNOptions{Username: testUser, Password: testPass},
			step: stepPermission, cause: causePeerPolicy + ": the peer 127.0.0.1 is a loopback address", fix: "relay.allow-loopback-peers: true"},
		// Without allow-loopback-peers ferry admits its relay address
		// 127.0.0.1 as a peer on relay ports only: the probe's peer socket,
		// on an ephemeral port outside 20000-20999, never gets the reply.
		{name: "loopback peer off the relay ports", srv: serverOpts{relayPorts: "20000-20999"}, opts: TURNOptions{Username: testUser, Password: testPass},
			step: stepRelay, cause: causePeerPolicy, fix: "relay.allow-loopback-peers: true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, tt.srv)
			if tt.hold {
				pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				if _, err := NewClient(pc, srv, Credentials{Username: testUser, Password: testPass}, time.Second).Allocate(); err != nil {
					t.Fatal(err)
				}
			}
			o := tt.opts
			o.Target, o.Timeout = target("turn", srv), 500*time.Millisecond
			rep, err := TURN(t.Context(), o)
			if err == nil || rep.OK {
				t.Fatalf("probe succeeded: %+v", rep)
			}
			if rep.FailedStep != tt.step || !strings.Contains(rep.Cause, tt.cause) || !strings.Contains(rep.Fix, tt.fix) {
				t.Fatalf("failed at %q: cause %q fix %q; want %q, %q, %q\nsteps %+v", rep.FailedStep, rep.Cause, rep.Fix, tt.step, tt.cause, tt.fix, rep.Steps)
			}
			var text bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"result: FAILED at " + tt.step, "cause:  " + rep.Cause, "fix:    " + rep.Fix} {
				if !strings.Contains(text.String(), want) {
					t.Fatalf("text report lacks %q:\n%s", want, text.String())
				}
			}
			b, _ := json.Marshal(rep)
			var back TURNReport
			if err := json.Unmarshal(b, &back); err != nil || back.Cause != rep.Cause || back.Fix != rep.Fix || back.FailedStep != tt.step {
				t.Fatalf("JSON report %s: %v", b, err)
			}
		})
	}
}

func TestSTUNProbeNoServerDiagnosis(t *testing.T) {
	silent := echoPeerSilent(t)
	rep, err := STUN(t.Context(), STUNOptions{Target: target("stun", silent), Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(rep.Cause, "no answer from "+silent.String()) || !strings.Contains(rep.Fix, fmt.Sprintf("UDP port %d", silent.Port())) {
		t.Fatalf("cause %q fix %q", rep.Cause, rep.Fix)
	}
	var text bytes.Buffer
	_ = rep.WriteText(&text)
	if !strings.Contains(text.String(), "cause:  no answer") {
		t.Fatalf("text report:\n%s", text.String())
	}
}

func TestTURNProbeNoServerDiagnosis(t *testing.T) {
	silent := echoPeerSilent(t)
	rep, err := TURN(t.Context(), TURNOptions{Target: target("turn", silent), Username: testUser, Password: testPass, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if rep.FailedStep != stepChallenge || !strings.Contains(rep.Cause, "no answer from "+silent.String()) || !strings.Contains(rep.Fix, "ferry ready") {
		t.Fatalf("failed at %q: cause %q fix %q", rep.FailedStep, rep.Cause, rep.Fix)
	}
}
