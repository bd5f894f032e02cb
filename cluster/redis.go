package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dial returns a client for the Redis at url (redis://, rediss:// or
// unix://, as cluster.redis takes it) with short timeouts: a round with
// Redis must fail fast, so that a node notices it alone and serves on.
// It does not connect until first used.
func Dial(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("cluster.redis: %w", err)
	}
	opt.DialTimeout = time.Second
	opt.ReadTimeout = time.Second
	opt.WriteTimeout = time.Second
	opt.MaxRetries = 0 // the next round retries
	opt.PoolSize = 8
	return redis.NewClient(opt), nil
}

// RouteRedisLogs sends the go-redis client's own log lines (connection
// pool trouble), which it writes to standard error through a process-wide
// logger, to log at debug level: the registry already says when Redis goes
// away and comes back.
func RouteRedisLogs(log *slog.Logger) { redis.SetLogger(redisLog{log}) }

type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
