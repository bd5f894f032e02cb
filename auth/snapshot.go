package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

// Compile-time interface guards.
var (
	_ fmt.Stringer   = (*Snapshot)(nil)
	_ slog.LogValuer = (*Snapshot)(nil)
)

// keyPrefix marks a user entry whose value is coturn's precomputed key
// MD5(name:realm:password) in hex rather than a password.
const keyPrefix = "0x"

// Snapshot is an immutable set of credentials for one realm: static users
// with their precomputed long-term keys and the TURN REST API shared secrets
// (the first signs new credentials; all are accepted). It is safe for
// concurrent use and never changes after NewSnapshot; reload builds a new one.
type Snapshot struct {
	realm   string
	users   map[string][]byte // name -> MD5(name:realm:password)
	secrets [][]byte          // REST API shared secrets, signing one first
}

// NewSnapshot builds a credential set for realm from users entries
// ("name=password" or "name=0x<32 hex digits>", the latter being coturn's
// precomputed MD5(name:realm:password)) and REST API shared secrets. Both
// lists may be empty; then nobody can authenticate. Errors name an entry by
// its user name or position, never by a password, key or secret.
func NewSnapshot(realm string, users []string, secrets []string) (*Snapshot, error) {
	if realm == "" {
		return nil, errors.New("auth: realm is empty")
	}
	s := &Snapshot{
		realm:   realm,
		users:   make(map[string][]byte, len(users)),
		secrets: make([][]byte, 0, len(secrets)),
	}
	for i, entry := range users {
		name, pass, ok := strings.Cut(entry, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("auth: users entry #%d is not name=password", i+1)
		}
		if strings.ContainsAny(name, ": \t") {
			return nil, fmt.Errorf("auth: user %q: name must not contain ':' or spaces", name)
		}
		if pass == "" {
			return nil, fmt.Errorf("auth: user %q: empty password", name)
		}
		if _, dup := s.users[name]; dup {
			return nil, fmt.Errorf("auth: user %q is listed more than once", name)
		}
		if h, isKey := strings.CutPrefix(pass, keyPrefix); isKey {
			key, err := hex.DecodeString(h)
			if err != nil || len(key) != 16 {
				return nil, fmt.Errorf("auth: user %q: a key in 0x form must be 32 hex digits (MD5 of name:realm:password)", name)
			}
			s.users[name] = key
			continue
		}
		key := stunwire.LongTermKey(name, realm, pass)
		s.users[name] = key[:]
	}
	for i, secret := range secrets {
		if secret == "" {
			return nil, fmt.Errorf("auth: secret #%d is empty", i+1)
		}
		for j, prev := range s.secrets {
			if string(prev) == secret {
				return nil, fmt.Errorf("auth: secret #%d repeats secret #%d", i+1, j+1)
			}
		}
		s.secrets = append(s.secrets, []byte(secret))
	}
	return s, nil
}

// Realm returns the realm the snapshot's keys are computed for.
func (s *Snapshot) Realm() string { return s.realm }

// Empty reports whether the snapshot holds no user and no secret: nobody
// can authenticate.
func (s *Snapshot) Empty() bool { return s == nil || len(s.users) == 0 && len(s.secrets) == 0 }

// HasSecrets reports whether REST API credentials can be verified and minted.
func (s *Snapshot) HasSecrets() bool { return len(s.secrets) > 0 }

// String describes the snapshot without any password, key or secret.
func (s *Snapshot) String() string {
	if s == nil {
		return "auth snapshot <nil>"
	}
	return fmt.Sprintf("auth snapshot realm=%q users=%d secrets=%d", s.realm, len(s.users), len(s.secrets))
}

// LogValue keeps credentials out of structured logs.
func (s *Snapshot) LogValue() slog.Value {
	if s == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.String("realm", s.realm),
		slog.Int("users", len(s.users)),
		slog.Int("secrets", len(s.secrets)),
	)
}

// Diff describes what changed from old to new for a reload log line, e.g.
// "users +1 -0 ~0, secrets 2->3 +1 -0". "~" counts users whose key changed
// (new password); ", realm changed" and ", signing secret changed" are
// appended when so. No name of a secret, password or key is printed. A nil
// snapshot counts as empty.
func Diff(old, new *Snapshot) string {
	var o, n Snapshot
	if old != nil {
		o = *old
	}
	if new != nil {
		n = *new
	}
	var added, removed, changed int
	for name, key := range n.users {
		prev, ok := o.users[name]
		switch {
		case !ok:
			added++
		case !bytes.Equal(prev, key):
			changed++
		}
	}
	for name := range o.users {
		if _, ok := n.users[name]; !ok {
			removed++
		}
	}
	secretsAdded := countMissing(n.secrets, o.secrets)
	secretsRemoved := countMissing(o.secrets, n.secrets)

	var b strings.Builder
	fmt.Fprintf(&b, "users +%d -%d ~%d, secrets %d->%d +%d -%d",
		added, removed, changed, len(o.secrets), len(n.secrets), secretsAdded, secretsRemoved)
	if o.realm != n.realm {
		b.WriteString(", realm changed")
	}
	if len(o.secrets) > 0 && len(n.secrets) > 0 && !bytes.Equal(o.secrets[0], n.secrets[0]) {
		b.WriteString(", signing secret changed")
	}
	return b.String()
}

// countMissing counts the entries of a that are not in b.
func countMissing(a, b [][]byte) int {
	n := 0
	for _, x := range a {
		found := false
		for _, y := range b {
			if bytes.Equal(x, y) {
				found = true
				break
			}
		}
		if !found {
			n++
		}
	}
	return n
}

// userKey returns a static user's long-term key.
func (s *Snapshot) userKey(name string) ([]byte, bool) {
	key, ok := s.users[name]
	return key, ok
}
