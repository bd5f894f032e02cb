package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kinds of revocation.
const (
	// RevokeUser refuses every credential of a user: a static user, or
	// the user part of REST user names ("<expiry>:<user>").
	RevokeUser = "user"
	// RevokeUsername refuses one credential user name.
	RevokeUsername = "username"
)

// Revocation is one revoked user or credential.
type Revocation struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Until is when the revocation lapses by itself: when no credential
	// it covers can still be valid.
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
	// Node is the node that recorded it.
	Node string    `json:"node,omitempty"`
	At   time.Time `json:"at"`
}

func (r Revocation) field() string { return r.Kind + ":" + r.Name }

// CheckRevocation validates kind and name as the admin API takes them.
func CheckRevocation(kind, name string) error {
	switch kind {
	case RevokeUser, RevokeUsername:
	default:
		return fmt.Errorf("kind %q: use %s or %s", kind, RevokeUser, RevokeUsername)
	}
	if name == "" || len(name) > 256 || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("%s %q: want 1 to 256 printable characters", kind, name)
	}
	return nil
}

// Revocations keeps the revocations in force: in Redis for a cluster,
// where every node learns of a change at once (pub/sub) and reloads the
// stored list on start and every Interval (so a change made while it was
// cut off reaches it too), or in this process alone without Redis.
type Revocations struct {
	client   redis.UniversalClient // nil: this process alone
	key, ch  string
	node     string
	interval time.Duration
	log      *slog.Logger
	onChange func([]Revocation)
	now      func() time.Time

	mu      sync.Mutex // local store; serialises onChange
	local   map[string]Revocation
	current atomic.Pointer[[]Revocation]
	sig     string // the last list handed to onChange, as its fields

	malformed atomic.Uint64
}

// RevocationOptions configure Revocations.
type RevocationOptions struct {
	// Client is the cluster's Redis; nil keeps the revocations in this
	// process only.
	Client redis.UniversalClient
	Prefix string
	// Node names this node in the records it writes.
	Node string
	// Interval is how often the stored list is reloaded (default 1s).
	Interval time.Duration
	// OnChange gets the revocations in force whenever they change.
	OnChange func([]Revocation)
	Log      *slog.Logger
}

// NewRevocations returns the store; with a client, Run keeps it current.
func NewRevocations(o RevocationOptions) *Revocations {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r := &Revocations{client: o.Client, key: o.Prefix + "revoked", ch: o.Prefix + "revocations", node: o.Node,
		interval: o.Interval, log: o.Log, onChange: o.OnChange, now: time.Now, local: map[string]Revocation{}}
	empty := []Revocation{}
	r.current.Store(&empty)
	return r
}

// Revoke records rev (Kind, Name, Until, Reason) and puts it in force on
// every node.
func (r *Revocations) Revoke(ctx context.Context, rev Revocation) (Revocation, error) {
	if err := CheckRevocation(rev.Kind, rev.Name); err != nil {
		return Revocation{}, err
	}
	rev.Node, rev.At = r.node, r.now().UTC()
	if r.client == nil {
		r.mu.Lock()
		r.local[rev.field()] = rev
		r.mu.Unlock()
		r.apply(r.liveLocal())
		return rev, nil
	}
	b, err := json.Marshal(rev)
	if err != nil {
		return Revocation{}, err
	}
	if _, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.key, rev.field(), b)
		p.Publish(ctx, r.ch, "revoke "+rev.field())
		return nil
	}); err != nil {
		return Revocation{}, fmt.Errorf("cluster: recording the revocation in Redis: %w", err)
	}
	return rev, r.reload(ctx)
}

// Lift takes the revocation of kind and name out; it reports whether there
// was one.
func (r *Revocations) Lift(ctx context.Context, kind, name string) (bool, error) {
	if err := CheckRevocation(kind, name); err != nil {
		return false, err
	}
	field := kind + ":" + name
	if r.client == nil {
		r.mu.Lock()
		_, had := r.local[field]
		delete(r.local, field)
		r.mu.Unlock()
		r.apply(r.liveLocal())
		return had, nil
	}
	var del *redis.IntCmd
	if _, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.HDel(ctx, r.key, field)
		p.Publish(ctx, r.ch, "lift "+field)
		return nil
	}); err != nil {
		return false, fmt.Errorf("cluster: lifting the revocation in Redis: %w", err)
	}
	return del.Val() > 0, r.reload(ctx)
}

// List returns the revocations in force.
func (r *Revocations) List() []Revocation {
	now := r.now()
	var out []Revocation
	for _, rev := range *r.current.Load() {
		if now.Before(rev.Until) {
			out = append(out, rev)
		}
	}
	return out
}

// Malformed counts stored records skipped as malformed.
func (r *Revocations) Malformed() uint64 { return r.malformed.Load() }

// Run keeps the list current until ctx is done: at once on a change
// published by any node, else every Interval. Without Redis it returns at
// once.
func (r *Revocations) Run(ctx context.Context) {
	if r.client == nil {
		return
	}
	sub := r.client.Subscribe(ctx, r.ch)
	defer sub.Close()
	msgs := sub.Channel()
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if err := r.reload(ctx); err != nil && ctx.Err() == nil {
			r.log.Debug("cluster: revocations not reloaded; keeping the last list", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-msgs:
		case <-t.C:
		}
	}
}

// reload reads the stored list, drops what has lapsed, and applies it.
func (r *Revocations) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.interval)
	defer cancel()
	all, err := r.client.HGetAll(ctx, r.key).Result()
	if err != nil {
		return fmt.Errorf("cluster: reading revocations: %w", err)
	}
	now := r.now()
	var live []Revocation
	var lapsed []string
	for field, v := range all {
		var rev Revocation
		if err := json.Unmarshal([]byte(v), &rev); err != nil || rev.field() != field || CheckRevocation(rev.Kind, rev.Name) != nil {
			r.malformed.Add(1)
			continue
		}
		if !now.Before(rev.Until) {
			lapsed = append(lapsed, field)
			continue
		}
		live = append(live, rev)
	}
	if len(lapsed) > 0 {
		_ = r.client.HDel(ctx, r.key, lapsed...).Err()
	}
	r.apply(live)
	return nil
}

// liveLocal is the local store without what has lapsed.
func (r *Revocations) liveLocal() []Revocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []Revocation
	for f, rev := range r.local {
		if now.Before(rev.Until) {
			out = append(out, rev)
		} else {
			delete(r.local, f)
		}
	}
	return out
}

// apply stores list and hands it to OnChange when it changed.
func (r *Revocations) apply(list []Revocation) {
	slices.SortFunc(list, func(a, b Revocation) int { return strings.Compare(a.field(), b.field()) })
	fields := make([]string, len(list))
	for i, rev := range list {
		fields[i] = rev.field() + "@" + rev.Until.String()
	}
	sig := strings.Join(fields, "\n")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.current.Store(&list)
	if sig == r.sig {
		return
	}
	r.sig = sig
	if r.onChange != nil {
		r.onChange(list)
	}
}
