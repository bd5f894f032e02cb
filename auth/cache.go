package auth

import (
	"container/list"
	"math"
)

const (
	// defaultCacheSize bounds the username->key cache used with several
	// REST secrets.
	defaultCacheSize = 65536
	// cacheGrace keeps an entry this many seconds past its credential's
	// expiry (or past its last use, for a credential already expired).
	cacheGrace = 5 * 60
)

// keyCache remembers which long-term key verified a REST username when the
// snapshot has several secrets. It is not safe for concurrent use; the
// Authenticator guards it with its mutex. Entries are tagged with the
// snapshot they were verified under and never answer for another one.
type keyCache struct {
	limit   int
	entries map[string]*list.Element // username -> element holding *cachedKey
	order   list.List                // front: most recently recorded
}

type cachedKey struct {
	username string
	snap     *Snapshot
	key      []byte
	deadline int64 // unix seconds; the entry is dropped after it
}

func newKeyCache(limit int) keyCache {
	return keyCache{limit: limit, entries: make(map[string]*list.Element)}
}

// get returns the key recorded for username under snap, or nil.
func (c *keyCache) get(snap *Snapshot, username string, now int64) []byte {
	el, ok := c.entries[username]
	if !ok {
		return nil
	}
	e := el.Value.(*cachedKey)
	if e.snap != snap || now > e.deadline {
		return nil
	}
	return e.key
}

// put records key for username under snap until deadline, evicting expired
// entries and then the least recently recorded ones to stay within limit.
func (c *keyCache) put(snap *Snapshot, username string, key []byte, deadline, now int64) {
	if el, ok := c.entries[username]; ok {
		e := el.Value.(*cachedKey)
		e.snap, e.key, e.deadline = snap, key, deadline
		c.order.MoveToFront(el)
		return
	}
	for back := c.order.Back(); back != nil; back = c.order.Back() {
		e := back.Value.(*cachedKey)
		if len(c.entries) < c.limit && now <= e.deadline {
			break
		}
		c.order.Remove(back)
		delete(c.entries, e.username)
	}
	if c.limit <= 0 {
		return
	}
	c.entries[username] = c.order.PushFront(&cachedKey{
		username: username,
		snap:     snap,
		key:      key,
		deadline: deadline,
	})
}

// clear drops every entry.
func (c *keyCache) clear() {
	clear(c.entries)
	c.order.Init()
}

// len returns the number of entries.
func (c *keyCache) len() int { return len(c.entries) }

// cacheDeadline is when an entry for a credential expiring at expiry, last
// verified at now, may be dropped.
func cacheDeadline(expiry, now int64) int64 {
	d := max(expiry, now)
	if d > math.MaxInt64-cacheGrace {
		return math.MaxInt64
	}
	return d + cacheGrace
}
