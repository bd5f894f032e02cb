package engine

import (
	"errors"
	"log/slog"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// Regression 12, and the bound of the lines clients cause: a flood of
// refused credentials from many addresses writes a burst of info lines,
// then a few a minute, and a "similar lines suppressed" line at most a
// minute after the first left out, counting every line left out once.
// Another kind of line (a refused peer) keeps its own budget.
func TestClientLogLinesBounded(t *testing.T) {
	tests := []struct {
		name     string
		floodFor time.Duration // the 500 refusals are spread over it
		// wantWritten bounds the refusal lines: the burst plus a few a
		// minute.
		maxWritten int
	}{
		{"at once", 0, ClientLogBurst},
		{"over 10s", 10 * time.Second, ClientLogBurst + 1 + 1},
		{"over 3m", 3 * time.Minute, ClientLogBurst + 3*ClientLogsPerMinute + 1},
	}
	lineRE := regexp.MustCompile(`msg="similar lines suppressed" of="credential refused" lines=(\d+)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &lineCounter{}
			s := newSim(t, simOpts{configure: func(c *Config) {
				c.Log = slog.New(slog.NewTextHandler(logs, nil)) // info
				c.AuthFailureRate, c.AuthFailureBurst = 0, 0
			}})
			const floods = 500
			step := tt.floodFor / floods
			for i := range floods {
				cl := s.client(UDP, netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 200)}), uint16(1000+i)).String(), "alice", "guess")
				if code := errorCode(cl.do(stun.MethodAllocate, requestedTransport(17))); code != 401 {
					t.Fatalf("guess %d: %d", i, code)
				}
				if step > 0 {
					s.advance(step)
				}
			}
			// The peer refusal is written: its kind has its own budget.
			ok := s.client(UDP, "198.51.100.250:1000", "bob", "builder")
			ok.allocate()
			if code := errorCode(ok.permit(netip.MustParseAddrPort("10.0.0.1:9"))); code != 403 {
				t.Fatalf("private peer: %d", code)
			}
			if !logs.has(`msg="peer refused by policy"`) || !logs.has(`reason=private`) {
				t.Fatalf("peer refusal not logged behind a credential flood:\n%s", logs.all())
			}
			// A minute after the flood every line left out has been
			// counted in a summary.
			for range 61 {
				s.advance(time.Second)
			}
			written := logs.count(`msg="credential refused"`)
			if written < ClientLogBurst || written > tt.maxWritten {
				t.Fatalf("%d refusal lines for %d refusals over %v; want %d to %d", written, floods, tt.floodFor, ClientLogBurst, tt.maxWritten)
			}
			suppressed := 0
			summaries := 0
			for _, l := range logs.snapshot() {
				if m := lineRE.FindStringSubmatch(l); m != nil {
					n, _ := strconv.Atoi(m[1])
					suppressed += n
					summaries++
				}
			}
			if written+suppressed != floods {
				t.Fatalf("%d lines written + %d counted as suppressed in %d summaries, want %d in all:\n%s", written, suppressed, summaries, floods, logs.all())
			}
			if maxSummaries := int(tt.floodFor/ClientLogSummaryEvery) + 2; summaries < 1 || summaries > maxSummaries {
				t.Fatalf("%d summary lines for a flood over %v", summaries, tt.floodFor)
			}
			if !logs.has(`level=INFO msg="credential refused" username=alice reason="MESSAGE-INTEGRITY does not verify`) {
				t.Fatalf("refusal line lacks the user or reason:\n%s", logs.all())
			}
			// Quiet again: no more summaries.
			before := len(logs.snapshot())
			for range 120 {
				s.advance(time.Second)
			}
			if after := len(logs.snapshot()); after != before {
				t.Fatalf("%d lines logged while nothing happened", after-before)
			}
		})
	}
}

// A relay socket that cannot be bound is logged at warn, bounded the same
// way.
func TestRelayBindFailureLogged(t *testing.T) {
	logs := &lineCounter{}
	s := newSim(t, simOpts{configure: func(c *Config) {
		c.Log = slog.New(slog.NewTextHandler(logs, nil))
	}})
	s.failOpen = func(OpenRelay) error { return errors.New("bind 192.0.2.1:40000: address already in use") }
	for i := range 50 {
		cl := s.client(UDP, netip.AddrPortFrom(netip.MustParseAddr("198.51.100.1"), uint16(1000+i)).String(), "alice", "wonderland")
		if code := errorCode(cl.do(stun.MethodAllocate, requestedTransport(17))); code != 508 {
			t.Fatalf("allocate %d: %d", i, code)
		}
	}
	if n := logs.count(`level=WARN msg="relay socket not bound"`); n != ClientLogBurst {
		t.Fatalf("%d relay failure lines, want %d:\n%s", n, ClientLogBurst, logs.all())
	}
	if !logs.has(`user=alice`) || !logs.has("address already in use") {
		t.Fatalf("relay failure line lacks the user or error:\n%s", logs.all())
	}
	for range 61 {
		s.advance(time.Second)
	}
	if !logs.has(`level=WARN msg="similar lines suppressed" of="relay socket not bound" lines=40`) {
		t.Fatalf("no count of the relay failures left out:\n%s", logs.all())
	}
}

// The 508 of a draining server carries its own reason phrase, so that
// clients (ferry probe) tell it from no free relay port.
func TestRefusalReasonPhrases(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*simNet)
		opts   simOpts
		code   int
		reason string
	}{
		{"draining", func(s *simNet) { s.sh.Drain() }, simOpts{}, 508, DrainingReason},
		{"relay socket not bound", func(s *simNet) { s.failOpen = func(OpenRelay) error { return errBindFailed } }, simOpts{}, 508, "Insufficient Capacity"},
		{"server-wide quota", nil, simOpts{configure: func(c *Config) { c.TotalAllocations = 1 }}, 508, "Insufficient Capacity"},
		{"user quota", nil, simOpts{configure: func(c *Config) { c.UserAllocations = 1 }}, 486, "Allocation Quota Reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.opts)
			s.client(UDP, "198.51.100.1:999", "alice", "wonderland").allocate()
			if tt.setup != nil {
				tt.setup(s)
			}
			cl := s.client(UDP, "198.51.100.1:1000", "alice", "wonderland")
			resp := cl.do(stun.MethodAllocate, requestedTransport(17))
			var ec stun.ErrorCodeAttribute
			if err := ec.GetFrom(resp); err != nil || int(ec.Code) != tt.code || string(ec.Reason) != tt.reason {
				t.Fatalf("got %d %q (%v), want %d %q", ec.Code, ec.Reason, err, tt.code, tt.reason)
			}
			if cl.verify(resp) != nil {
				t.Fatal("refusal not signed")
			}
		})
	}
}

func (l *lineCounter) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *lineCounter) all() string { return strings.Join(l.snapshot(), "") }
