package auth

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"
)

func FuzzParseRESTUsername(f *testing.F) {
	for _, seed := range []string{
		"1700000600", "1700000600:carol", "0:x", "1:a:b", "abc", "-1", "+1", "1 ",
		"99999999999999999999", "9223372036854775807", "9223372036854775808",
		":x", "1:", "", ":", "١٢٣", "0x10",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, username string) {
		expiry, userID, err := parseRESTUsername(username)
		if err != nil {
			if expiry != 0 || userID != "" {
				t.Fatalf("error %v with results %d, %q", err, expiry, userID)
			}
			return
		}
		ts, user, hasUser := strings.Cut(username, ":")
		if expiry < 0 || strings.TrimLeft(ts, "0123456789") != "" {
			t.Fatalf("accepted %q: expiry %d", username, expiry)
		}
		if n, perr := strconv.ParseInt(ts, 10, 64); perr != nil || n != expiry {
			t.Fatalf("accepted %q: expiry %d, ParseInt %d, %v", username, expiry, n, perr)
		}
		switch {
		case !hasUser && userID != username:
			t.Fatalf("%q: userID %q, want the whole username", username, userID)
		case hasUser && (user == "" || userID != user):
			t.Fatalf("%q: userID %q, want %q", username, userID, user)
		}
	})
}

// FuzzInspect feeds arbitrary bytes to Inspect and Screen: they must never
// panic, never modify their input, and Screen replies only with a 401 error
// response.
func FuzzInspect(f *testing.F) {
	user, pass := Mint(secretB, "carol", time.Hour, t0())
	for _, seed := range [][]byte{
		signedRequest(f, stun.MethodAllocate, user, testRealm, pass),
		signedRequest(f, stun.MethodRefresh, user, testRealm, "wrong"),
		signedRequest(f, stun.MethodChannelBind, "alice", testRealm, "pw-alice"),
		signedRequest(f, stun.MethodAllocate, "-1", testRealm, "x"),
		signedRequest(f, stun.MethodBinding, "x:y", testRealm, "x"),
		{0x00, 0x03, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		// MESSAGE-INTEGRITY of length 0 as the only attribute.
		{0x00, 0x03, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x00, 0x08, 0x00, 0x00},
		{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4},
		{},
	} {
		f.Add(seed)
	}
	snap, err := NewSnapshot(testRealm, []string{"alice=pw-alice"}, []string{secretA, secretB})
	if err != nil {
		f.Fatal(err)
	}
	a := New(snap, nil, fixedClock(t0()))
	a.cache = newKeyCache(64)
	h := a.Handler()
	f.Fuzz(func(t *testing.T, raw []byte) {
		orig := string(raw)
		a.Inspect(raw)
		reply := a.Screen(raw, nil)
		if string(raw) != orig {
			t.Fatal("input modified")
		}
		if reply != nil {
			m := new(stun.Message)
			var ec stun.ErrorCodeAttribute
			if err := m.UnmarshalBinary(reply); err != nil || ec.GetFrom(m) != nil || ec.Code != stun.CodeUnauthorized {
				t.Fatalf("reply is not a 401: %v %v", err, ec)
			}
		}
		// Whatever Inspect recorded, the handler must still answer.
		m := new(stun.Message)
		if m.UnmarshalBinary(raw) == nil {
			var u stun.Username
			if u.GetFrom(m) == nil {
				h(&turn.RequestAttributes{Username: u.String(), Realm: testRealm, Method: m.Type.Method})
			}
		}
	})
}
