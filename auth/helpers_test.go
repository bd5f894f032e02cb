package auth

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

const (
	testRealm = "ferry.test"
	secretA   = "secret-A-0123456789"
	secretB   = "secret-B-abcdefghij"
	secretC   = "secret-C-not-configured"
)

// t0Unix is the fake "now" most tests start at.
const t0Unix = 1_700_000_000

func t0() time.Time { return time.Unix(t0Unix, 0) }

// fakeClock is a settable clock for Authenticator.now.
type fakeClock struct{ unixNano atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) now() time.Time           { return time.Unix(0, c.unixNano.Load()) }
func (c *fakeClock) set(t time.Time)          { c.unixNano.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration)      { c.unixNano.Add(int64(d)) }
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

func mustSnapshot(t testing.TB, users, secrets []string) *Snapshot {
	t.Helper()
	s, err := NewSnapshot(testRealm, users, secrets)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	return s
}

// signedRequest builds a long-term-credential STUN request as a client
// would send it.
func signedRequest(t testing.TB, method stun.Method, username, realm, password string) []byte {
	t.Helper()
	m, err := stun.Build(
		stun.TransactionID,
		stun.NewType(method, stun.ClassRequest),
		stun.NewUsername(username),
		stun.NewRealm(realm),
		stun.NewNonce("n"),
		stun.NewLongTermIntegrity(username, realm, password),
		stun.Fingerprint,
	)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	return m.Raw
}

// verifies reports whether key verifies the MESSAGE-INTEGRITY of raw.
func verifies(t testing.TB, raw []byte, key []byte) bool {
	t.Helper()
	m := new(stun.Message)
	if err := m.UnmarshalBinary(raw); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return stun.MessageIntegrity(key).Check(m) == nil
}
