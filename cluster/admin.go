package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryrtc/ferry/engine"
)

// The admin API across the cluster: GET /v1/admin/allocations?scope=cluster
// and DELETE /v1/admin/users/{user}/allocations?scope=cluster on any node.
// The node asked publishes the request on the channel P admin; every node
// (itself included) does it on its own table and pushes its answer to the
// list P adminreply:ID, which the node asked reads until every node of the
// registry has answered or the timeout has passed (the nodes that did not
// answer are named). Allocations never leave their node otherwise.

// Admin operations.
const (
	AdminList      = "list"
	AdminCloseUser = "close-user"
)

// AdminOptions configure an Admin.
type AdminOptions struct {
	Client redis.UniversalClient
	Prefix string
	Node   string
	// List and CloseUser are this node's table.
	List      func() []engine.AllocationInfo
	CloseUser func(user string) int
	// Nodes returns the cluster's live nodes (the registry's).
	Nodes func() []Node
	// Timeout bounds a request (default 2s).
	Timeout time.Duration
	Log     *slog.Logger
}

// Admin answers the cluster's admin requests and makes them.
type Admin struct {
	o         AdminOptions
	ch        string
	malformed atomic.Uint64
}

// adminRequest is what goes on the channel.
type adminRequest struct {
	ID   string `json:"id"`
	Op   string `json:"op"`
	User string `json:"user,omitempty"`
	From string `json:"from"`
}

// NodeAnswer is one node's answer.
type NodeAnswer struct {
	Node        string                  `json:"node"`
	Allocations []engine.AllocationInfo `json:"allocations,omitempty"`
	Closed      int                     `json:"closed"`
}

// ClusterAnswer is the cluster's answer: every node's that answered, and
// the live nodes that did not in time.
type ClusterAnswer struct {
	Nodes   []NodeAnswer
	Missing []string
}

// NewAdmin returns the cluster's admin; Run answers requests.
func NewAdmin(o AdminOptions) *Admin {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Admin{o: o, ch: o.Prefix + "admin"}
}

// Malformed counts requests on the channel skipped as malformed.
func (a *Admin) Malformed() uint64 { return a.malformed.Load() }

// Run answers the requests on the channel until ctx is done.
func (a *Admin) Run(ctx context.Context) {
	sub := a.o.Client.Subscribe(ctx, a.ch)
	defer sub.Close()
	msgs := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			var req adminRequest
			if err := json.Unmarshal([]byte(m.Payload), &req); err != nil || req.ID == "" || len(req.ID) > 64 ||
				(req.Op != AdminList && req.Op != AdminCloseUser) || (req.Op == AdminCloseUser && req.User == "") {
				a.malformed.Add(1)
				continue
			}
			a.answer(ctx, req)
		}
	}
}

// answer does req on this node's table and pushes the answer.
func (a *Admin) answer(ctx context.Context, req adminRequest) {
	ans := NodeAnswer{Node: a.o.Node}
	switch req.Op {
	case AdminList:
		ans.Allocations = a.o.List()
	case AdminCloseUser:
		ans.Closed = a.o.CloseUser(req.User)
		a.o.Log.Info("admin: user's allocations closed at another node's request", "user", req.User, "closed", ans.Closed, "from", req.From)
	}
	b, err := json.Marshal(ans)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()
	key := a.o.Prefix + "adminreply:" + req.ID
	_, err = a.o.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, key, b)
		p.Expire(ctx, key, 30*time.Second)
		return nil
	})
	if err != nil {
		a.o.Log.Debug("cluster: admin answer not sent", "op", req.Op, "err", err)
	}
}

// List asks every node for its allocations.
func (a *Admin) List(ctx context.Context) (ClusterAnswer, error) {
	return a.ask(ctx, adminRequest{Op: AdminList})
}

// CloseUser asks every node to close user's allocations.
func (a *Admin) CloseUser(ctx context.Context, user string) (ClusterAnswer, error) {
	return a.ask(ctx, adminRequest{Op: AdminCloseUser, User: user})
}

func (a *Admin) ask(ctx context.Context, req adminRequest) (ClusterAnswer, error) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	req.ID, req.From = hex.EncodeToString(b), a.o.Node
	expect := map[string]bool{a.o.Node: true}
	for _, n := range a.o.Nodes() {
		expect[n.ID] = true
	}
	payload, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, a.o.Timeout)
	defer cancel()
	if err := a.o.Client.Publish(ctx, a.ch, payload).Err(); err != nil {
		return ClusterAnswer{}, fmt.Errorf("cluster: asking the nodes through Redis: %w", err)
	}
	key := a.o.Prefix + "adminreply:" + req.ID
	var out ClusterAnswer
	for len(expect) > 0 {
		left := time.Until(deadline(ctx))
		if left <= 0 {
			break
		}
		res, err := a.o.Client.BLPop(ctx, min(left, 500*time.Millisecond), key).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return out, fmt.Errorf("cluster: reading the nodes' answers: %w", err)
		}
		var ans NodeAnswer
		if len(res) != 2 || json.Unmarshal([]byte(res[1]), &ans) != nil || ans.Node == "" {
			a.malformed.Add(1)
			continue
		}
		delete(expect, ans.Node)
		out.Nodes = append(out.Nodes, ans)
	}
	for id := range expect {
		out.Missing = append(out.Missing, id)
	}
	slices.Sort(out.Missing)
	slices.SortFunc(out.Nodes, func(x, y NodeAnswer) int { return strings.Compare(x.Node, y.Node) })
	return out, nil
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
