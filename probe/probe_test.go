package probe

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/internal/testutil"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		err  string
	}{
		{in: "stun://example.com", want: Target{"stun", "example.com", 3478}},
		{in: "stun://192.0.2.1:5000", want: Target{"stun", "192.0.2.1", 5000}},
		{in: "turn://[2001:db8::1]:3479", want: Target{"turn", "2001:db8::1", 3479}},
		{in: "turn://[2001:db8::1]", want: Target{"turn", "2001:db8::1", 3478}},
		{in: "stun:example.com:19302", want: Target{"stun", "example.com", 19302}},
		{in: "turn:example.com?transport=udp", want: Target{"turn", "example.com", 3478}},
		{in: "TURN://Example.com:1", want: Target{"turn", "Example.com", 1}},
		{in: "turn:example.com?transport=tcp", err: "only UDP"},
		{in: "turns://example.com", err: "not probed"},
		{in: "http://example.com", err: "not stun or turn"},
		{in: "stun://example.com:0", err: "not a port"},
		{in: "stun://example.com:99999", err: "not a port"},
		{in: "stun://", err: "no host"},
		{in: "stun://example.com/path", err: "no path"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestSTUNProbe(t *testing.T) {
	tests := []struct {
		name      string
		alt       bool
		mapping   Behaviour
		filtering Behaviour
		hairpin   string
		rfc5780   bool
	}{
		{name: "with alternates", alt: true, mapping: EndpointIndependent, filtering: EndpointIndependent, hairpin: HairpinYes, rfc5780: true},
		{name: "without alternates", mapping: Unknown, filtering: Unknown, hairpin: HairpinYes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, serverOpts{alt: tt.alt})
			rep, err := STUN(t.Context(), STUNOptions{Target: target("stun", srv), Timeout: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if rep.NAT || rep.Mapped != rep.Local {
				t.Errorf("mapped %s from %s, NAT %v", rep.Mapped, rep.Local, rep.NAT)
			}
			if rep.Mapping != tt.mapping || rep.Filtering != tt.filtering || rep.Hairpinning != tt.hairpin || rep.RFC5780 != tt.rfc5780 {
				t.Errorf("got mapping %s filtering %s hairpin %s rfc5780 %v", rep.Mapping, rep.Filtering, rep.Hairpinning, rep.RFC5780)
			}
			// RESPONSE-ORIGIN and SOFTWARE come with RFC 5780 only: a
			// plain Binding answer over UDP carries what RFC 8489 needs.
			wantOrigin, wantSoftware := "", ""
			if tt.alt {
				wantOrigin, wantSoftware = srv.String(), "ferry"
			}
			if rep.ResponseOrigin != wantOrigin || rep.Software != wantSoftware {
				t.Errorf("origin %q software %q, want %q %q", rep.ResponseOrigin, rep.Software, wantOrigin, wantSoftware)
			}
			var text bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text.String(), "mapping              "+string(tt.mapping)) {
				t.Errorf("text report:\n%s", text.String())
			}
			if _, err := json.Marshal(rep); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSTUNProbeNoServer(t *testing.T) {
	// A bound socket that never answers.
	silent := echoPeerSilent(t)
	rep, err := STUN(t.Context(), STUNOptions{Target: target("stun", silent), Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if len(rep.Steps) != 1 || rep.Steps[0].Status != StatusNoAnswer {
		t.Errorf("steps %+v", rep.Steps)
	}
}

func TestTURNProbe(t *testing.T) {
	tests := []struct {
		name      string
		loopback  bool
		denied    []string
		opts      TURNOptions
		peer      bool
		failStep  string // "" = all ok
		errSubstr string
	}{
		{name: "self, password", loopback: true, opts: TURNOptions{Username: testUser, Password: testPass}},
		{name: "self, REST secret", loopback: true, opts: TURNOptions{Username: "probe", Secret: testSecret}},
		{name: "echo peer", loopback: true, peer: true, opts: TURNOptions{Username: testUser, Password: testPass}},
		{name: "wrong password", loopback: true, opts: TURNOptions{Username: testUser, Password: "nope"}, failStep: "allocate"},
		// The probe's peer is on 127.0.0.1, ferry's relay address, which
		// ferry admits as a peer (relay to relay): deny it explicitly.
		{name: "peer refused", denied: []string{"127.0.0.0/8"}, opts: TURNOptions{Username: testUser, Password: testPass}, failStep: "permission", errSubstr: "403"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, serverOpts{allowLoopback: tt.loopback, denied: tt.denied})
			o := tt.opts
			o.Target, o.Timeout = target("turn", srv), time.Second
			if tt.peer {
				o.Peer = addrOf(testutil.EchoPeer(t, "udp4", "127.0.0.1:0").LocalAddr()).String()
			}
			rep, err := TURN(t.Context(), o)
			if tt.failStep == "" {
				if err != nil || !rep.OK {
					t.Fatalf("TURN: %v\n%+v", err, rep.Steps)
				}
				if len(rep.Steps) != 6 || rep.Relayed == "" || rep.Peer == "" {
					t.Errorf("report %+v", rep)
				}
				if tt.peer && rep.Peer != o.Peer {
					t.Errorf("peer %s, want %s", rep.Peer, o.Peer)
				}
				return
			}
			if err == nil || rep.OK {
				t.Fatalf("TURN succeeded, want failure at %s", tt.failStep)
			}
			for _, s := range rep.Steps {
				if s.Name == tt.failStep {
					if s.Status != StatusFailed || !strings.Contains(s.Detail, tt.errSubstr) {
						t.Errorf("step %+v", s)
					}
				}
			}
			if last := rep.Steps[len(rep.Steps)-1]; last.Status != StatusSkipped {
				t.Errorf("steps after the failure not skipped: %+v", rep.Steps)
			}
		})
	}
}
