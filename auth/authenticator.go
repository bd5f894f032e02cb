package auth

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"
)

// Authenticator answers pion's authentication callback from the current
// Snapshot, which Swap replaces atomically (hot reload). It is safe for
// concurrent use.
type Authenticator struct {
	cur  atomic.Pointer[Snapshot]
	log  *slog.Logger
	now  func() time.Time
	msgs sync.Pool // *stun.Message scratch for Inspect and Screen

	// mu guards cache and orders Swap against cache writes, so a key
	// verified under an old snapshot is never recorded after the swap.
	mu    sync.Mutex
	cache keyCache
}

// New returns an Authenticator serving s. A nil s, like an empty snapshot,
// refuses everyone until Swap. log may be nil (discard); now may be nil
// (time.Now).
func New(s *Snapshot, log *slog.Logger, now func() time.Time) *Authenticator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	a := &Authenticator{
		log:   log,
		now:   now,
		msgs:  sync.Pool{New: func() any { return new(stun.Message) }},
		cache: newKeyCache(defaultCacheSize),
	}
	a.cur.Store(s)
	return a
}

// Snapshot returns the credential set currently served.
func (a *Authenticator) Snapshot() *Snapshot { return a.cur.Load() }

// Swap makes s the served credential set and returns the previous one. It
// forgets which secret verified which REST username; the next request of
// each client is verified again (Inspect runs before every request).
func (a *Authenticator) Swap(s *Snapshot) (old *Snapshot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old = a.cur.Swap(s)
	a.cache.clear()
	return old
}

// Handler returns pion's authentication callback. It answers, in order:
//   - REALM other than the snapshot's: refused;
//   - a static user (exact name): userID is the name, with its key;
//   - a REST username "<expiry>[:<user>]": userID is the user part (or the
//     whole username), with the key of the secret Inspect saw verify it, else
//     of the first secret. An expired credential is refused on Allocate only.
//
// Anything else is refused. Refusals are logged at debug level.
func (a *Authenticator) Handler() turn.AuthHandler {
	return a.authenticate
}

func (a *Authenticator) authenticate(ra *turn.RequestAttributes) (userID string, key []byte, ok bool) {
	s := a.cur.Load()
	switch {
	case s == nil:
		return a.refuse(ra, "no credentials loaded")
	case ra.Realm != s.realm:
		return a.refuse(ra, reasonRealm)
	}
	if key, ok := s.userKey(ra.Username); ok {
		return ra.Username, key, true
	}
	if len(s.secrets) == 0 {
		return a.refuse(ra, reasonUnknown)
	}
	expiry, userID, err := parseRESTUsername(ra.Username)
	if err != nil {
		return a.refuse(ra, reasonUnknown+": "+err.Error())
	}
	var now int64
	if ra.Method == stun.MethodAllocate || len(s.secrets) > 1 {
		now = a.now().Unix()
	}
	if ra.Method == stun.MethodAllocate && expiry < now {
		return a.refuse(ra, reasonExpired)
	}
	if len(s.secrets) > 1 {
		a.mu.Lock()
		key = a.cache.get(s, ra.Username, now)
		a.mu.Unlock()
	}
	if key == nil {
		key = restKey(s.secrets[0], ra.Username, s.realm)
	}
	return userID, key, true
}

func (a *Authenticator) refuse(ra *turn.RequestAttributes, reason string) (string, []byte, bool) {
	a.logRefusal(ra.Username, ra.Realm, ra.Method, ra.SrcAddr, reason)
	return "", nil, false
}

// logRefusal logs a refused credential at debug level: never a key.
func (a *Authenticator) logRefusal(username, realm string, method stun.Method, src net.Addr, reason string) {
	ctx := context.Background()
	if !a.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	source := "<unknown>"
	if src != nil {
		source = src.String()
	}
	a.log.LogAttrs(ctx, slog.LevelDebug, "auth: credential refused",
		slog.String("username", username),
		slog.String("realm", realm),
		slog.String("method", method.String()),
		slog.String("src", source),
		slog.String("reason", reason),
	)
}
