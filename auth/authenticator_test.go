package auth

import (
	"bytes"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"

	"github.com/ferryrtc/ferry/internal/testutil"
)

func TestHandler(t *testing.T) {
	aliceKey := turn.GenerateAuthKey("alice", testRealm, "pw-alice")
	static := []string{"alice=pw-alice", "bob=0x" + hex.EncodeToString(turn.GenerateAuthKey("bob", testRealm, "pw-bob"))}
	withSecrets := mustSnapshot(t, static, []string{secretA})
	noSecrets := mustSnapshot(t, static, nil)

	fresh, freshPass := Mint(secretA, "carol", 10*time.Minute, t0())
	freshAnon, freshAnonPass := Mint(secretA, "", 10*time.Minute, t0())
	expired, expiredPass := Mint(secretA, "carol", -time.Second, t0())
	edge, edgePass := Mint(secretA, "carol", 0, t0()) // expires exactly now
	restKeyOf := func(u, p string) []byte { return turn.GenerateAuthKey(u, testRealm, p) }

	tests := []struct {
		name       string
		snap       *Snapshot
		username   string
		realm      string
		method     stun.Method
		wantOK     bool
		wantUserID string
		wantKey    []byte
	}{
		{"static user", withSecrets, "alice", testRealm, stun.MethodAllocate, true, "alice", aliceKey},
		{"static user 0x key", noSecrets, "bob", testRealm, stun.MethodRefresh, true, "bob", turn.GenerateAuthKey("bob", testRealm, "pw-bob")},
		{"static wrong name", noSecrets, "alicia", testRealm, stun.MethodAllocate, false, "", nil},
		{"static name is case sensitive", noSecrets, "Alice", testRealm, stun.MethodAllocate, false, "", nil},
		{"unknown name with secrets", withSecrets, "alicia", testRealm, stun.MethodAllocate, false, "", nil},
		{"static realm mismatch", withSecrets, "alice", "other", stun.MethodAllocate, false, "", nil},
		{"REST without secrets", noSecrets, fresh, testRealm, stun.MethodAllocate, false, "", nil},
		{"REST fresh", withSecrets, fresh, testRealm, stun.MethodAllocate, true, "carol", restKeyOf(fresh, freshPass)},
		{"REST fresh no user", withSecrets, freshAnon, testRealm, stun.MethodAllocate, true, freshAnon, restKeyOf(freshAnon, freshAnonPass)},
		{"REST expires now", withSecrets, edge, testRealm, stun.MethodAllocate, true, "carol", restKeyOf(edge, edgePass)},
		{"REST expired Allocate", withSecrets, expired, testRealm, stun.MethodAllocate, false, "", nil},
		{"REST expired Refresh", withSecrets, expired, testRealm, stun.MethodRefresh, true, "carol", restKeyOf(expired, expiredPass)},
		{"REST expired CreatePermission", withSecrets, expired, testRealm, stun.MethodCreatePermission, true, "carol", restKeyOf(expired, expiredPass)},
		{"REST expired ChannelBind", withSecrets, expired, testRealm, stun.MethodChannelBind, true, "carol", restKeyOf(expired, expiredPass)},
		{"REST expired Connect", withSecrets, expired, testRealm, stun.MethodConnect, true, "carol", restKeyOf(expired, expiredPass)},
		{"REST realm mismatch", withSecrets, fresh, "other", stun.MethodRefresh, false, "", nil},
		{"bad abc", withSecrets, "abc", testRealm, stun.MethodAllocate, false, "", nil},
		{"bad -1", withSecrets, "-1", testRealm, stun.MethodRefresh, false, "", nil},
		{"bad overflow", withSecrets, "99999999999999999999", testRealm, stun.MethodRefresh, false, "", nil},
		{"bad :x", withSecrets, ":x", testRealm, stun.MethodRefresh, false, "", nil},
		{"bad empty", withSecrets, "", testRealm, stun.MethodRefresh, false, "", nil},
		{"bad empty user", withSecrets, "1800000000:", testRealm, stun.MethodRefresh, false, "", nil},
		{"no snapshot", nil, "alice", testRealm, stun.MethodAllocate, false, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, logged := testutil.CaptureLogger(t)
			a := New(tc.snap, log, fixedClock(t0()))
			src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
			userID, key, ok := a.Handler()(&turn.RequestAttributes{
				Username: tc.username, Realm: tc.realm, SrcAddr: src, Method: tc.method,
			})
			if ok != tc.wantOK || userID != tc.wantUserID || !bytes.Equal(key, tc.wantKey) {
				t.Fatalf("handler = %q, %x, %v; want %q, %x, %v",
					userID, key, ok, tc.wantUserID, tc.wantKey, tc.wantOK)
			}
			out := logged.String()
			if !ok {
				if !strings.Contains(out, "src=127.0.0.1:40000") || !strings.Contains(out, tc.username) ||
					!strings.Contains(out, "level=DEBUG") {
					t.Errorf("refusal log %q lacks a debug line with source and username", out)
				}
			}
			for _, leak := range []string{"pw-alice", "pw-bob", secretA, hex.EncodeToString(aliceKey), freshPass, expiredPass} {
				if strings.Contains(out, leak) {
					t.Errorf("log %q reveals a credential", out)
				}
			}
		})
	}
}

// TestRotation checks that with secrets [A, B] a credential minted with B is
// accepted once Inspect has seen its request, and that Inspect records
// nothing a request does not prove.
func TestRotation(t *testing.T) {
	user, pass := Mint(secretB, "carol", time.Hour, t0())
	userA, passA := Mint(secretA, "dave", time.Hour, t0())
	userC, passC := Mint(secretC, "eve", time.Hour, t0())
	handle := func(a *Authenticator, username string, method stun.Method) []byte {
		t.Helper()
		_, key, ok := a.Handler()(&turn.RequestAttributes{Username: username, Realm: testRealm, Method: method})
		if !ok {
			t.Fatalf("handler refused %q", username)
		}
		return key
	}

	t.Run("second secret via Inspect", func(t *testing.T) {
		a := New(mustSnapshot(t, nil, []string{secretA, secretB}), nil, fixedClock(t0()))
		req := signedRequest(t, stun.MethodAllocate, user, testRealm, pass)
		if verifies(t, req, handle(a, user, stun.MethodAllocate)) {
			t.Fatal("key verifies before Inspect; the test proves nothing")
		}
		a.Inspect(req)
		if !verifies(t, req, handle(a, user, stun.MethodAllocate)) {
			t.Fatal("key from handler does not verify the B-signed request after Inspect")
		}
		// A later Refresh from the same client, also inspected, still works.
		refresh := signedRequest(t, stun.MethodRefresh, user, testRealm, pass)
		a.Inspect(refresh)
		if !verifies(t, refresh, handle(a, user, stun.MethodRefresh)) {
			t.Fatal("Refresh key does not verify")
		}
	})

	t.Run("first secret needs no Inspect", func(t *testing.T) {
		a := New(mustSnapshot(t, nil, []string{secretA, secretB}), nil, fixedClock(t0()))
		req := signedRequest(t, stun.MethodAllocate, userA, testRealm, passA)
		if !verifies(t, req, handle(a, userA, stun.MethodAllocate)) {
			t.Fatal("A-signed request does not verify")
		}
	})

	t.Run("unknown secret records nothing", func(t *testing.T) {
		a := New(mustSnapshot(t, nil, []string{secretA, secretB}), nil, fixedClock(t0()))
		req := signedRequest(t, stun.MethodAllocate, userC, testRealm, passC)
		a.Inspect(req)
		if n := a.cache.len(); n != 0 {
			t.Fatalf("cache has %d entries after an unverifiable request", n)
		}
		if verifies(t, req, handle(a, userC, stun.MethodAllocate)) {
			t.Fatal("C-signed request verifies")
		}
	})

	t.Run("cache not poisoned by a wrong password", func(t *testing.T) {
		a := New(mustSnapshot(t, nil, []string{secretA, secretB}), nil, fixedClock(t0()))
		good := signedRequest(t, stun.MethodAllocate, user, testRealm, pass)
		a.Inspect(good)
		for _, wrong := range []string{"wrong", passA, pass + "x"} {
			a.Inspect(signedRequest(t, stun.MethodRefresh, user, testRealm, wrong))
		}
		if !verifies(t, good, handle(a, user, stun.MethodRefresh)) {
			t.Fatal("a wrong-password request replaced the recorded key")
		}
		// And a fresh username with a wrong password is never recorded.
		a.Inspect(signedRequest(t, stun.MethodAllocate, userA+"x", testRealm, "wrong"))
		if n := a.cache.len(); n != 1 {
			t.Fatalf("cache has %d entries, want 1", n)
		}
	})

	t.Run("expired on Allocate is not recorded", func(t *testing.T) {
		a := New(mustSnapshot(t, nil, []string{secretA, secretB}), nil, fixedClock(t0().Add(2*time.Hour)))
		a.Inspect(signedRequest(t, stun.MethodAllocate, user, testRealm, pass))
		if n := a.cache.len(); n != 0 {
			t.Fatalf("cache has %d entries", n)
		}
		refresh := signedRequest(t, stun.MethodRefresh, user, testRealm, pass)
		a.Inspect(refresh)
		if !verifies(t, refresh, handle(a, user, stun.MethodRefresh)) {
			t.Fatal("expired B credential not accepted on Refresh")
		}
	})

	t.Run("realm mismatch is not recorded", func(t *testing.T) {
		a := New(mustSnapshot(t, nil, []string{secretA, secretB}), nil, fixedClock(t0()))
		a.Inspect(signedRequest(t, stun.MethodAllocate, user, "other", restPassword([]byte(secretB), user)))
		if n := a.cache.len(); n != 0 {
			t.Fatalf("cache has %d entries", n)
		}
	})
}

func TestSwap(t *testing.T) {
	first := mustSnapshot(t, []string{"alice=pw"}, []string{secretA, secretB})
	second := mustSnapshot(t, []string{"bob=pw"}, []string{secretA, secretB})
	a := New(first, nil, fixedClock(t0()))
	ok := func(username string) bool {
		_, _, ok := a.Handler()(&turn.RequestAttributes{Username: username, Realm: testRealm, Method: stun.MethodAllocate})
		return ok
	}
	if !ok("alice") || ok("bob") {
		t.Fatal("first snapshot: want alice only")
	}

	user, pass := Mint(secretB, "carol", time.Hour, t0())
	req := signedRequest(t, stun.MethodAllocate, user, testRealm, pass)
	a.Inspect(req)
	if a.cache.len() != 1 {
		t.Fatal("Inspect recorded nothing")
	}

	if old := a.Swap(second); old != first {
		t.Errorf("Swap returned %v, want the first snapshot", old)
	}
	if a.Snapshot() != second {
		t.Error("Snapshot() is not the swapped-in snapshot")
	}
	if ok("alice") || !ok("bob") {
		t.Fatal("second snapshot: want bob only")
	}
	if a.cache.len() != 0 {
		t.Error("Swap kept cache entries")
	}
	_, key, _ := a.Handler()(&turn.RequestAttributes{Username: user, Realm: testRealm, Method: stun.MethodAllocate})
	if verifies(t, req, key) {
		t.Error("key recorded under the old snapshot still answered")
	}
	a.Inspect(req)
	_, key, _ = a.Handler()(&turn.RequestAttributes{Username: user, Realm: testRealm, Method: stun.MethodAllocate})
	if !verifies(t, req, key) {
		t.Error("B credential not accepted after Inspect under the new snapshot")
	}

	// Swapping to a snapshot without B: B credentials no longer verify.
	a.Swap(mustSnapshot(t, nil, []string{secretA, secretC}))
	a.Inspect(req)
	_, key, _ = a.Handler()(&turn.RequestAttributes{Username: user, Realm: testRealm, Method: stun.MethodAllocate})
	if verifies(t, req, key) {
		t.Error("B credential verifies after B was removed")
	}
}

func TestKeyCache(t *testing.T) {
	s1, s2 := mustSnapshot(t, nil, nil), mustSnapshot(t, nil, nil)
	key := []byte("0123456789abcdef")

	t.Run("deadline and snapshot", func(t *testing.T) {
		c := newKeyCache(4)
		c.put(s1, "u", key, 100, 50)
		tests := []struct {
			snap *Snapshot
			now  int64
			want bool
		}{
			{s1, 50, true},
			{s1, 100, true},
			{s1, 101, false},
			{s2, 50, false},
		}
		for _, tc := range tests {
			if got := c.get(tc.snap, "u", tc.now) != nil; got != tc.want {
				t.Errorf("get(now=%d, same snapshot=%v) = %v, want %v", tc.now, tc.snap == s1, got, tc.want)
			}
		}
	})

	t.Run("bounded, oldest evicted", func(t *testing.T) {
		c := newKeyCache(3)
		for i, u := range []string{"a", "b", "c", "d", "e"} {
			c.put(s1, u, key, 1000, int64(i))
		}
		if c.len() != 3 {
			t.Fatalf("len = %d, want 3", c.len())
		}
		for u, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true, "e": true} {
			if got := c.get(s1, u, 10) != nil; got != want {
				t.Errorf("%s present = %v, want %v", u, got, want)
			}
		}
	})

	t.Run("re-recording refreshes", func(t *testing.T) {
		c := newKeyCache(2)
		c.put(s1, "a", key, 1000, 0)
		c.put(s1, "b", key, 1000, 0)
		c.put(s1, "a", key, 1000, 0) // a is now newest
		c.put(s1, "c", key, 1000, 0) // evicts b
		if c.get(s1, "a", 0) == nil || c.get(s1, "b", 0) != nil || c.get(s1, "c", 0) == nil {
			t.Error("want a and c kept, b evicted")
		}
	})

	t.Run("expired dropped before limit", func(t *testing.T) {
		c := newKeyCache(10)
		c.put(s1, "old", key, 5, 0)
		c.put(s1, "new", key, 1000, 10)
		if c.len() != 1 || c.get(s1, "new", 10) == nil {
			t.Errorf("len = %d, want only the live entry", c.len())
		}
	})

	t.Run("deadline", func(t *testing.T) {
		tests := []struct{ expiry, now, want int64 }{
			{1000, 10, 1000 + cacheGrace},
			{10, 1000, 1000 + cacheGrace},
			{1<<63 - 1, 0, 1<<63 - 1},
		}
		for _, tc := range tests {
			if got := cacheDeadline(tc.expiry, tc.now); got != tc.want {
				t.Errorf("cacheDeadline(%d, %d) = %d, want %d", tc.expiry, tc.now, got, tc.want)
			}
		}
	})

	t.Run("Authenticator bound", func(t *testing.T) {
		a := New(mustSnapshot(t, nil, []string{secretA, secretB}), nil, fixedClock(t0()))
		a.cache = newKeyCache(4)
		var last []byte
		var lastUser string
		for i := range 10 {
			u, p := Mint(secretB, "user"+string(rune('a'+i)), time.Hour, t0())
			last, lastUser = signedRequest(t, stun.MethodAllocate, u, testRealm, p), u
			a.Inspect(last)
		}
		if a.cache.len() != 4 {
			t.Fatalf("cache len = %d, want 4", a.cache.len())
		}
		_, key, _ := a.Handler()(&turn.RequestAttributes{Username: lastUser, Realm: testRealm, Method: stun.MethodAllocate})
		if !verifies(t, last, key) {
			t.Error("newest entry evicted")
		}
	})
}

// TestInspectSingleSecretIsFree checks that with one secret Inspect does
// not decode the message (it would allocate).
func TestInspectSingleSecretIsFree(t *testing.T) {
	user, pass := Mint(secretA, "carol", time.Hour, t0())
	req := signedRequest(t, stun.MethodAllocate, user, testRealm, pass)
	for _, snap := range []*Snapshot{mustSnapshot(t, nil, []string{secretA}), mustSnapshot(t, []string{"a=b"}, nil)} {
		a := New(snap, nil, fixedClock(t0()))
		if n := testing.AllocsPerRun(100, func() { a.Inspect(req) }); n != 0 {
			t.Errorf("%v: Inspect allocates %.0f times", snap, n)
		}
	}
}

func TestScreen(t *testing.T) {
	snap := mustSnapshot(t, []string{"alice=pw-alice"}, []string{secretA})
	multi := mustSnapshot(t, []string{"alice=pw-alice"}, []string{secretA, secretB})
	fresh, freshPass := Mint(secretA, "carol", time.Hour, t0())
	freshB, freshBPass := Mint(secretB, "carol", time.Hour, t0())
	expired, expiredPass := Mint(secretA, "carol", -time.Hour, t0())

	noMI, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("n"))
	noNonce, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewLongTermIntegrity("alice", testRealm, "wrong"))
	binding, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("x:y"),
		stun.NewShortTermIntegrity("ice-pwd"), stun.Fingerprint)
	response, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse),
		stun.NewUsername("alice"), stun.NewRealm(testRealm), stun.NewNonce("n"),
		stun.NewLongTermIntegrity("alice", testRealm, "wrong"))

	tests := []struct {
		name     string
		snap     *Snapshot
		raw      []byte
		want401  bool
		recorded int
	}{
		{"static ok", snap, signedRequest(t, stun.MethodAllocate, "alice", testRealm, "pw-alice"), false, 0},
		{"static wrong password", snap, signedRequest(t, stun.MethodAllocate, "alice", testRealm, "wrong"), true, 0},
		{"unknown user", snap, signedRequest(t, stun.MethodAllocate, "mallory", testRealm, "x"), true, 0},
		{"realm mismatch", snap, signedRequest(t, stun.MethodAllocate, "alice", "other", "pw-alice"), true, 0},
		{"REST ok", snap, signedRequest(t, stun.MethodAllocate, fresh, testRealm, freshPass), false, 0},
		{"REST wrong password", snap, signedRequest(t, stun.MethodRefresh, fresh, testRealm, "wrong"), true, 0},
		{"REST expired Allocate", snap, signedRequest(t, stun.MethodAllocate, expired, testRealm, expiredPass), true, 0},
		{"REST expired Refresh", snap, signedRequest(t, stun.MethodRefresh, expired, testRealm, expiredPass), false, 0},
		{"REST expired ChannelBind", snap, signedRequest(t, stun.MethodChannelBind, expired, testRealm, expiredPass), false, 0},
		{"REST second secret", multi, signedRequest(t, stun.MethodAllocate, freshB, testRealm, freshBPass), false, 1},
		{"REST unknown secret", multi, signedRequest(t, stun.MethodCreatePermission, freshB, testRealm, restPassword([]byte(secretC), freshB)), true, 0},
		{"bad username", snap, signedRequest(t, stun.MethodAllocate, "-1", testRealm, "x"), true, 0},
		{"no MESSAGE-INTEGRITY (pion challenges)", snap, noMI.Raw, false, 0},
		{"no NONCE (pion answers 400)", snap, noNonce.Raw, false, 0},
		{"Binding with short-term integrity", snap, binding.Raw, false, 0},
		{"response, not request", snap, response.Raw, false, 0},
		{"not STUN", snap, []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, false, 0},
		{"no snapshot", nil, signedRequest(t, stun.MethodAllocate, "alice", testRealm, "wrong"), false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := New(tc.snap, nil, fixedClock(t0()))
			orig := append([]byte(nil), tc.raw...)
			reply := a.Screen(tc.raw, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1})
			if !bytes.Equal(orig, tc.raw) {
				t.Fatal("Screen modified its input")
			}
			if n := a.cache.len(); n != tc.recorded {
				t.Errorf("cache len = %d, want %d", n, tc.recorded)
			}
			if !tc.want401 {
				if reply != nil {
					t.Fatalf("Screen replied %x, want nil (pass to pion)", reply)
				}
				return
			}
			if reply == nil {
				t.Fatal("Screen passed a refused credential to pion")
			}
			req, res := new(stun.Message), new(stun.Message)
			if err := req.UnmarshalBinary(tc.raw); err != nil {
				t.Fatal(err)
			}
			if err := res.UnmarshalBinary(reply); err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			var code stun.ErrorCodeAttribute
			var realm stun.Realm
			var nonce stun.Nonce
			if err := code.GetFrom(res); err != nil || code.Code != stun.CodeUnauthorized {
				t.Errorf("ERROR-CODE = %v, %v; want 401", code.Code, err)
			}
			if err := realm.GetFrom(res); err != nil || realm.String() != testRealm {
				t.Errorf("REALM = %q, %v; want %q", realm, err, testRealm)
			}
			if err := nonce.GetFrom(res); err != nil || nonce.String() != "n" {
				t.Errorf("NONCE = %q, %v; want the request's", nonce, err)
			}
			if res.TransactionID != req.TransactionID {
				t.Error("transaction ID differs from the request's")
			}
			if res.Type != stun.NewType(req.Type.Method, stun.ClassErrorResponse) {
				t.Errorf("type = %v, want %v error response", res.Type, req.Type.Method)
			}
			if res.Contains(stun.AttrMessageIntegrity) {
				t.Error("401 carries MESSAGE-INTEGRITY")
			}
		})
	}
}

// TestConcurrentSwapInspect exercises Inspect, the handler and Swap at once
// (run with -race); afterwards the served snapshot answers correctly.
func TestConcurrentSwapInspect(t *testing.T) {
	s1 := mustSnapshot(t, nil, []string{secretA, secretB})
	s2 := mustSnapshot(t, nil, []string{secretB, secretA})
	a := New(s1, nil, fixedClock(t0()))
	user, pass := Mint(secretB, "carol", time.Hour, t0())
	req := signedRequest(t, stun.MethodRefresh, user, testRealm, pass)
	h := a.Handler()

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if g == 0 && i%10 == 0 {
					if i%20 == 0 {
						a.Swap(s2)
					} else {
						a.Swap(s1)
					}
				}
				a.Inspect(req)
				h(&turn.RequestAttributes{Username: user, Realm: testRealm, Method: stun.MethodRefresh})
				_ = a.Screen(req, nil)
			}
		}()
	}
	wg.Wait()
	a.Swap(s1)
	a.Inspect(req)
	_, key, ok := h(&turn.RequestAttributes{Username: user, Realm: testRealm, Method: stun.MethodRefresh})
	if !ok || !verifies(t, req, key) {
		t.Fatal("B credential not accepted after concurrent swaps")
	}
}
