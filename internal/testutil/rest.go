package testutil

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
)

// RESTPassword returns the TURN REST password of username under secret,
// base64(HMAC-SHA1(secret, username)), computed here independently of
// package auth so that tests check auth against the specification.
func RESTPassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
