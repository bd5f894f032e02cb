package creds

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
)

func listeners(t *testing.T, urls ...string) []config.Listener {
	t.Helper()
	var out []config.Listener
	for _, u := range urls {
		l, err := config.ParseListener(u)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func TestURLs(t *testing.T) {
	tests := []struct {
		name       string
		host       string
		listen     []string
		stun, turn []string
	}{
		{"wildcards at a host name, UDP before TCP before TLS", "turn.example.com",
			[]string{"tls://0.0.0.0:5349", "tcp://0.0.0.0:3478", "udp://0.0.0.0:3478", "udp://[::]:3478", "dtls://0.0.0.0:5349"},
			[]string{"stun:turn.example.com:3478"},
			[]string{"turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:5349?transport=tcp"}},
		{"IPv6 host is bracketed", "2001:db8::7", []string{"udp://[::]:3478"},
			[]string{"stun:[2001:db8::7]:3478"}, []string{"turn:[2001:db8::7]:3478?transport=udp"}},
		{"no host: the listener's own address", "", []string{"udp://127.0.0.1:3478", "tcp://[::1]:3479"},
			[]string{"stun:127.0.0.1:3478"}, []string{"turn:127.0.0.1:3478?transport=udp", "turn:[::1]:3479?transport=tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stun, turn := URLs(tt.host, listeners(t, tt.listen...))
			if !reflect.DeepEqual(stun, tt.stun) || !reflect.DeepEqual(turn, tt.turn) {
				t.Fatalf("URLs = %v %v\nwant %v %v", stun, turn, tt.stun, tt.turn)
			}
		})
	}
}

func TestMint(t *testing.T) {
	snap, err := auth.NewSnapshot("ferry.test", nil, []string{"first", "second"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	ls := listeners(t, "udp://0.0.0.0:3478")
	tests := []struct {
		name     string
		ttl, max time.Duration
		wantTTL  int64
		wantErr  string
	}{
		{"as asked", 10 * time.Minute, time.Hour, 600, ""},
		{"capped", 48 * time.Hour, 24 * time.Hour, 86400, ""},
		{"sub-second rounds up to 1s", time.Millisecond, time.Hour, 1, ""},
		{"non-positive refused", 0, time.Hour, 0, "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Mint(snap, "alice", tt.ttl, tt.max, now, []Target{{Host: "turn.example.com", Listeners: ls}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.TTL != tt.wantTTL || !c.ExpiresAt.Equal(now.Add(time.Duration(tt.wantTTL)*time.Second)) {
				t.Fatalf("ttl %d expires %s", c.TTL, c.ExpiresAt)
			}
			u, p := auth.Mint("first", "alice", time.Duration(tt.wantTTL)*time.Second, now)
			if c.Username != u || c.Credential != p {
				t.Fatal("not signed with the first secret")
			}
			if len(c.ICEServers) != 2 || c.ICEServers[0].Username != "" || c.ICEServers[1].Credential != p {
				t.Fatalf("iceServers %+v: STUN entry must carry no credential, TURN entry must", c.ICEServers)
			}
		})
	}
}
