package offload

import (
	"errors"
	"net/netip"
	"testing"
)

func TestCheckChannel(t *testing.T) {
	ap := netip.MustParseAddrPort
	good := Channel{Client: ap("198.18.0.2:1000"), Listener: ap("198.18.0.1:3478"),
		Relay: ap("198.18.0.1:40000"), Peer: ap("198.18.0.3:5000"), Number: 0x4000}
	good6 := Channel{Client: ap("[2001:db8::2]:1000"), Listener: ap("[2001:db8::1]:3478"),
		Relay: ap("[2001:db8::1]:40000"), Peer: ap("[2001:db8::3]:5000"), Number: 0x7ffe}
	for _, ch := range []Channel{good, good6} {
		if err := checkChannel(ch); err != nil {
			t.Errorf("checkChannel(%+v) = %v", ch, err)
		}
	}
	mapped := good
	mapped.Peer = ap("[::ffff:198.18.0.3]:5000")
	if err := checkChannel(mapped); err != nil {
		t.Errorf("IPv4-mapped peer: %v", err)
	}
	for name, mod := range map[string]func(*Channel){
		"mixed client/peer":   func(c *Channel) { c.Peer = ap("[2001:db8::3]:5000") },
		"mixed relay/peer":    func(c *Channel) { c.Relay = ap("[2001:db8::1]:40000") },
		"mixed client/listen": func(c *Channel) { c.Listener = ap("[2001:db8::1]:3478") },
	} {
		ch := good
		mod(&ch)
		if err := checkChannel(ch); !errors.Is(err, ErrMixedFamilies) {
			t.Errorf("%s: checkChannel = %v, want ErrMixedFamilies", name, err)
		}
	}
	for name, mod := range map[string]func(*Channel){
		"wildcard listener": func(c *Channel) { c.Listener = ap("0.0.0.0:3478") },
		"wildcard relay":    func(c *Channel) { c.Relay = ap("[::]:40000") },
		"port 0":            func(c *Channel) { c.Peer = ap("198.18.0.3:0") },
		"no client":         func(c *Channel) { c.Client = netip.AddrPort{} },
		"channel 0x3fff":    func(c *Channel) { c.Number = 0x3fff },
		"channel 0x7fff":    func(c *Channel) { c.Number = 0x7fff },
	} {
		ch := good
		mod(&ch)
		if err := checkChannel(ch); err == nil {
			t.Errorf("%s: checkChannel accepted %+v", name, ch)
		}
	}
}

func TestStatsPassed(t *testing.T) {
	var s Stats
	for i, f := range statFields(&s) {
		*f = uint64(i + 1)
	}
	// Pass fields: everything but the first six and DropError.
	var want uint64
	for i := 7; i <= 18; i++ {
		want += uint64(i)
	}
	if got := s.Passed(); got != want {
		t.Errorf("Passed() = %d, want %d", got, want)
	}
}
