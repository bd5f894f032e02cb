package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzParseRequest feeds untrusted query strings, bodies and content types
// to the request parser: it must not panic, and what it accepts must be
// something Mint can sign.
func FuzzParseRequest(f *testing.F) {
	seeds := []struct{ query, body, contentType string }{
		{"", "", ""},
		{"user=alice&ttl=3600", "", ""},
		{"ttl=1h", "", ""},
		{"", `{"user": "bob", "ttl": 60}`, "application/json"},
		{"", `{"ttl": "90s"}`, ""},
		{"", "user=carol&ttl=45", "application/x-www-form-urlencoded"},
		{"ttl=%zz", "", ""},
		{"", `{"ttl": 1e400}`, "application/json"},
		{"", `{"user": "a\u0000b"}`, "application/json; charset=utf-8"},
		{"ttl=-9223372036854775808", "", ""},
		{"ttl=9223372036854775807s", "", ""},
		{"", "[]", "text/plain"},
	}
	for _, s := range seeds {
		f.Add(s.query, s.body, s.contentType)
	}
	f.Fuzz(func(t *testing.T, query, body, contentType string) {
		r := httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body))
		r.URL.RawQuery = query
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		req, ierr := parseRequest(r)
		if ierr != nil {
			if ierr.field == "" || ierr.status < 400 || ierr.status > 499 {
				t.Fatalf("error %+v names no field or is not a 4xx", ierr)
			}
			return
		}
		if req.ttl != 0 && req.ttl < time.Second {
			t.Fatalf("accepted ttl %v below one second", req.ttl)
		}
		if err := checkUser(req.user); err != nil {
			t.Fatalf("accepted user %q: %v", req.user, err)
		}
	})
}
