package cluster

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Usage records: what each allocation relayed, for billing and debugging.
// A node writes a record when an allocation ends and, while it lives,
// every minute (cumulative: the latest record of an allocation is its
// usage so far). Records go to a Redis Stream (P usage, trimmed to about
// MaxLen entries) and, optionally, to a JSON-lines file (a node without
// Redis). `ferry usage` reads them back and sums them per user.

// Record is one usage record.
type Record struct {
	// Node, Session and ID name the allocation: ID is unique within one
	// run (Session) of a node.
	Node    string `json:"node"`
	Session string `json:"session"`
	ID      uint64 `json:"id"`

	User           string    `json:"user"`
	Username       string    `json:"username"`
	Client         string    `json:"client"`
	Transport      string    `json:"transport"`
	Relay          string    `json:"relay"`
	RelayTransport string    `json:"relay_transport"`
	Start          time.Time `json:"start"`
	// End is when the allocation ended (Final) or when the record was
	// taken (a record of a live allocation).
	End       time.Time `json:"end"`
	Final     bool      `json:"final"`
	EndReason string    `json:"end_reason,omitempty"`

	ToPeerPackets   uint64 `json:"to_peer_packets"`
	ToPeerBytes     uint64 `json:"to_peer_bytes"`
	FromPeerPackets uint64 `json:"from_peer_packets"`
	FromPeerBytes   uint64 `json:"from_peer_bytes"`
}

func (r Record) key() string { return r.Node + "/" + r.Session + "/" + strconv.FormatUint(r.ID, 10) }

// UsageOptions configure a UsageWriter.
type UsageOptions struct {
	// Client is the cluster's Redis; nil writes no stream.
	Client redis.UniversalClient
	Prefix string
	// MaxLen trims the stream to about this many records (default
	// 1,000,000).
	MaxLen int64
	// File, if set, is a JSON-lines file records are appended to.
	File string
	// Queue bounds the records held while Redis is away (default 100,000;
	// beyond it the oldest are dropped and counted).
	Queue int
	Log   *slog.Logger
}

// UsageWriter writes records in the background: Add never blocks.
type UsageWriter struct {
	o       UsageOptions
	stream  string
	in      chan Record
	file    *os.File
	pending []Record // not yet in Redis

	written, dropped, failures atomic.Uint64
}

// NewUsageWriter opens the file, if any.
func NewUsageWriter(o UsageOptions) (*UsageWriter, error) {
	if o.MaxLen <= 0 {
		o.MaxLen = 1_000_000
	}
	if o.Queue <= 0 {
		o.Queue = 100_000
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	w := &UsageWriter{o: o, stream: o.Prefix + "usage", in: make(chan Record, 4096)}
	if o.File != "" {
		f, err := os.OpenFile(o.File, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, fmt.Errorf("usage.file: %w", err)
		}
		w.file = f
	}
	return w, nil
}

// Add queues r; when the queue is full it is dropped and counted.
func (w *UsageWriter) Add(r Record) {
	select {
	case w.in <- r:
	default:
		w.dropped.Add(1)
	}
}

// Written, Dropped and Failures count records written (to Redis, or to
// the file without Redis), records dropped, and failed writes.
func (w *UsageWriter) Written() uint64  { return w.written.Load() }
func (w *UsageWriter) Dropped() uint64  { return w.dropped.Load() }
func (w *UsageWriter) Failures() uint64 { return w.failures.Load() }

// Run writes what Add queues until ctx is done, then writes what is left
// (bounded by two seconds) and closes the file.
func (w *UsageWriter) Run(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case r := <-w.in:
			w.take(r)
			continue
		case <-t.C:
			w.flush(ctx)
		case <-ctx.Done():
			for {
				select {
				case r := <-w.in:
					w.take(r)
					continue
				default:
				}
				break
			}
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			w.flush(fctx)
			cancel()
			if len(w.pending) > 0 {
				w.o.Log.Warn("usage: records not written to Redis at shutdown", "records", len(w.pending))
			}
			if w.file != nil {
				_ = w.file.Close()
			}
			return
		}
	}
}

// take appends r to the file at once and queues it for Redis.
func (w *UsageWriter) take(r Record) {
	if w.file != nil {
		b, _ := json.Marshal(r)
		if _, err := w.file.Write(append(b, '\n')); err != nil {
			w.failures.Add(1)
		} else if w.o.Client == nil {
			w.written.Add(1)
		}
	}
	if w.o.Client == nil {
		return
	}
	if len(w.pending) >= w.o.Queue {
		w.pending = w.pending[1:]
		w.dropped.Add(1)
	}
	w.pending = append(w.pending, r)
}

// flush writes the queued records to the stream.
func (w *UsageWriter) flush(ctx context.Context) {
	if w.o.Client == nil || len(w.pending) == 0 {
		return
	}
	for len(w.pending) > 0 {
		n := min(len(w.pending), 500)
		batch := w.pending[:n]
		_, err := w.o.Client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range batch {
				b, _ := json.Marshal(r)
				p.XAdd(ctx, &redis.XAddArgs{Stream: w.stream, MaxLen: w.o.MaxLen, Approx: true, Values: []any{"record", b}})
			}
			return nil
		})
		if err != nil {
			w.failures.Add(1)
			return // kept; the next flush retries
		}
		w.written.Add(uint64(n))
		w.pending = w.pending[n:]
	}
	w.pending = slices.Clip(w.pending[:0])
}

// ReadUsage reads the stream's records written since since; malformed
// entries are skipped and counted in skipped.
func ReadUsage(ctx context.Context, c redis.UniversalClient, prefix string, since time.Time) (recs []Record, skipped int, err error) {
	start := strconv.FormatInt(since.UnixMilli(), 10)
	for {
		msgs, err := c.XRangeN(ctx, prefix+"usage", start, "+", 1000).Result()
		if err != nil {
			return nil, skipped, fmt.Errorf("reading usage records from Redis: %w", err)
		}
		for _, m := range msgs {
			s, _ := m.Values["record"].(string)
			var r Record
			if err := json.Unmarshal([]byte(s), &r); err != nil || r.Node == "" {
				skipped++
				continue
			}
			recs = append(recs, r)
		}
		if len(msgs) < 1000 {
			return recs, skipped, nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// ReadUsageFile reads the records of a JSON-lines file ended (or taken)
// since since; malformed lines are skipped and counted.
func ReadUsageFile(r io.Reader, since time.Time) (recs []Record, skipped int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Node == "" {
			skipped++
			continue
		}
		if !rec.End.Before(since) {
			recs = append(recs, rec)
		}
	}
	return recs, skipped, sc.Err()
}

// UserUsage is one user's usage.
type UserUsage struct {
	User            string  `json:"user"`
	Allocations     int     `json:"allocations"`
	Seconds         float64 `json:"seconds"`
	ToPeerPackets   uint64  `json:"to_peer_packets"`
	ToPeerBytes     uint64  `json:"to_peer_bytes"`
	FromPeerPackets uint64  `json:"from_peer_packets"`
	FromPeerBytes   uint64  `json:"from_peer_bytes"`
}

// Summarize sums records per user (only user's when user is not ""): an
// allocation counts once, with its latest record (its final one when it
// has one), since records are cumulative.
func Summarize(recs []Record, user string) []UserUsage {
	latest := map[string]Record{}
	for _, r := range recs {
		if user != "" && r.User != user {
			continue
		}
		k := r.key()
		if old, ok := latest[k]; !ok || later(r, old) {
			latest[k] = r
		}
	}
	by := map[string]*UserUsage{}
	for _, r := range latest {
		u := by[r.User]
		if u == nil {
			u = &UserUsage{User: r.User}
			by[r.User] = u
		}
		u.Allocations++
		u.Seconds += max(0, r.End.Sub(r.Start).Seconds())
		u.ToPeerPackets += r.ToPeerPackets
		u.ToPeerBytes += r.ToPeerBytes
		u.FromPeerPackets += r.FromPeerPackets
		u.FromPeerBytes += r.FromPeerBytes
	}
	out := make([]UserUsage, 0, len(by))
	for _, u := range by {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b UserUsage) int { return cmp.Compare(a.User, b.User) })
	return out
}

// later reports whether a supersedes b for the same allocation.
func later(a, b Record) bool {
	if a.Final != b.Final {
		return a.Final
	}
	return a.End.After(b.End) || a.End.Equal(b.End) && a.ToPeerBytes+a.FromPeerBytes > b.ToPeerBytes+b.FromPeerBytes
}

// ErrNoSource is returned by `ferry usage` without Redis or a file.
var ErrNoSource = errors.New("no usage source: set cluster.redis or give --file")
