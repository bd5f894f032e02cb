package auth

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST API specifies.
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferryrtc/ferry/internal/stunwire"
)

// restSeparator separates the expiry from the user in a REST username.
const restSeparator = ":"

// maxExpiryDigits bounds the expiry field: int64 has at most 19 digits.
const maxExpiryDigits = 19

var (
	errEmptyExpiry = errors.New("empty expiry")
	errBadExpiry   = errors.New("expiry is not decimal unix seconds")
	errEmptyUser   = errors.New("empty user after ':'")
)

// Mint returns a TURN REST API credential signed with secret and valid until
// now+ttl: the username is "<unix expiry>" when user is empty, else
// "<unix expiry>:<user>", and the password is base64(HMAC-SHA1(secret,
// username)), as coturn's use-auth-secret and pion's
// GenerateLongTermTURNRESTCredentials compute it. Mint does not validate
// user; (*Snapshot).Mint does.
func Mint(secret, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10)
	if user != "" {
		username += restSeparator + user
	}
	return username, restPassword([]byte(secret), username)
}

// Mint returns a REST credential for user valid for ttl from now, signed with
// the snapshot's first secret. user may be empty; it must not contain ':'.
func (s *Snapshot) Mint(user string, ttl time.Duration, now time.Time) (username, password string, err error) {
	if len(s.secrets) == 0 {
		return "", "", errors.New("auth: mint: no REST API secret configured")
	}
	if strings.Contains(user, restSeparator) {
		return "", "", fmt.Errorf("auth: mint: user %q must not contain ':'", user)
	}
	if ttl <= 0 {
		return "", "", fmt.Errorf("auth: mint: user %q: ttl %s is not positive", user, ttl)
	}
	username, password = Mint(string(s.secrets[0]), user, ttl, now)
	return username, password, nil
}

// parseRESTUsername splits a REST username "<expiry>" or "<expiry>:<user>"
// into the expiry (unix seconds, decimal digits only) and the user part,
// or the whole username when there is none.
func parseRESTUsername(username string) (expiry int64, userID string, err error) {
	ts, user, hasUser := strings.Cut(username, restSeparator)
	if ts == "" {
		return 0, "", errEmptyExpiry
	}
	if len(ts) > maxExpiryDigits {
		return 0, "", errBadExpiry
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return 0, "", errBadExpiry
		}
	}
	expiry, err = strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, "", errBadExpiry // overflow: 19 digits above MaxInt64
	}
	if !hasUser {
		return expiry, username, nil
	}
	if user == "" {
		return 0, "", errEmptyUser
	}
	return expiry, user, nil
}

// restPassword is base64(HMAC-SHA1(secret, username)).
func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// restKey is the long-term key of a REST credential signed with secret.
func restKey(secret []byte, username, realm string) []byte {
	key := stunwire.LongTermKey(username, realm, restPassword(secret, username))
	return key[:]
}
