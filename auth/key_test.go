package auth

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v5"
)

func TestKey(t *testing.T) {
	now := time.Now()
	oldU, oldP := Mint("old-secret", "bob", time.Hour, now)
	newU, newP := Mint("new-secret", "bob", time.Hour, now)
	a := New(mustSnapshot(t, []string{"alice=wonderland"}, []string{"new-secret", "old-secret"}), nil, nil)
	tests := []struct {
		name string
		raw  []byte
		want []byte // nil: no key
	}{
		{"static user", signedRequest(t, stun.MethodRefresh, "alice", testRealm, "wonderland"),
			turn.GenerateAuthKey("alice", testRealm, "wonderland")},
		{"static user, wrong password", signedRequest(t, stun.MethodRefresh, "alice", testRealm, "nope"), nil},
		{"REST, first secret", signedRequest(t, stun.MethodCreatePermission, newU, testRealm, newP),
			turn.GenerateAuthKey(newU, testRealm, newP)},
		{"REST, second secret", signedRequest(t, stun.MethodChannelBind, oldU, testRealm, oldP),
			turn.GenerateAuthKey(oldU, testRealm, oldP)},
		{"REST, unknown secret", signedRequest(t, stun.MethodRefresh, newU, testRealm, "x"), nil},
		{"other realm", signedRequest(t, stun.MethodRefresh, "alice", "other", "wonderland"), nil},
		{"unknown user", signedRequest(t, stun.MethodRefresh, "mallory", testRealm, "x"), nil},
		{"no integrity", stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw, nil},
		{"garbage", []byte("not stun"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.raw)
			got := a.Key(tt.raw)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Key = %x, want %x", got, tt.want)
			}
			if !bytes.Equal(orig, tt.raw) {
				t.Fatal("request modified")
			}
		})
	}
	if New(nil, nil, nil).Key(tests[0].raw) != nil {
		t.Fatal("key without a snapshot")
	}
}

func TestRefuse(t *testing.T) {
	a := New(mustSnapshot(t, []string{"alice=wonderland"}, nil), nil, nil)
	req := signedRequest(t, stun.MethodAllocate, "alice", "other-realm", "anything")
	reply := a.Refuse(req)
	if reply == nil {
		t.Fatal("no reply")
	}
	m := &stun.Message{Raw: reply}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	var ec stun.ErrorCodeAttribute
	var realm stun.Realm
	var nonce stun.Nonce
	if ec.GetFrom(m) != nil || ec.Code != 401 || realm.GetFrom(m) != nil || realm.String() != testRealm || nonce.GetFrom(m) != nil || nonce.String() != "n" {
		t.Fatalf("reply %v: code %v realm %q nonce %q", m, ec.Code, realm, nonce)
	}
	if len(reply) > len(req) {
		t.Errorf("reply %d bytes for a %d-byte request", len(reply), len(req))
	}
	for _, raw := range [][]byte{stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw, []byte("x"),
		stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)).Raw} {
		if a.Refuse(raw) != nil {
			t.Errorf("refused %x", raw)
		}
	}
}
