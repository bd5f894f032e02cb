package engine

import (
	"net/netip"
	"time"
)

// conn is a client connection (TCP, TLS, DTLS) the engine knows of.
// Connections without an allocation are bounded in number (per shard and
// per client address) and in time (Config.ConnectionIdle), so held
// sockets cannot starve the server.
type conn struct {
	client    Client
	alloc     *allocation
	idleSince int64
}

// connCounts counts the connections that hold no allocation.
type connCounts struct {
	total int
	perIP map[netip.Addr]int
}

func (n *connCounts) add(ip netip.Addr, d int) {
	n.total += d
	if v := n.perIP[ip] + d; v > 0 {
		n.perIP[ip] = v
	} else {
		delete(n.perIP, ip)
	}
}

// StreamOpened reports a new client connection. It returns false when the
// connection is over the bounds for connections without an allocation:
// close it then.
func (e *Engine) StreamOpened(c *Client, now time.Time) bool {
	e.setTime(now)
	if _, known := e.conns[c.Socket]; known {
		return true
	}
	ip := remoteIP(c.Remote)
	if (e.cfg.MaxIdleConnections > 0 && e.idle.total >= e.cfg.MaxIdleConnections) ||
		(e.cfg.MaxIdleConnectionsPerIP > 0 && e.idle.perIP[ip] >= e.cfg.MaxIdleConnectionsPerIP) {
		e.stats.Dropped[DropRateLimit].inc()
		return false
	}
	e.conns[c.Socket] = &conn{client: *c, idleSince: e.now}
	e.idle.add(ip, 1)
	return true
}

// StreamClosed reports that a client connection ended; its allocation, if
// any, ends with it (RFC 8656 §3.1).
func (e *Engine) StreamClosed(out *Output, c *Client, now time.Time) {
	e.setTime(now)
	cn := e.conns[c.Socket]
	if cn == nil {
		return
	}
	if a := cn.alloc; a != nil {
		e.deleteAllocation(out, a, EndClient) // makes cn idle again
	}
	e.forgetConn(c.Socket)
}

// forgetConn removes a connection from the engine's books.
func (e *Engine) forgetConn(s SocketID) {
	cn := e.conns[s]
	if cn == nil {
		return
	}
	if cn.alloc == nil {
		e.idle.add(remoteIP(cn.client.Remote), -1)
	}
	delete(e.conns, s)
}

// busyConn marks a connection as holding allocation a.
func (e *Engine) busyConn(cn *conn, a *allocation) {
	if cn.alloc == nil {
		e.idle.add(remoteIP(cn.client.Remote), -1)
	}
	cn.alloc = a
}

// idleConn marks a connection as holding no allocation from now.
func (e *Engine) idleConn(cn *conn) {
	cn.idleSince = e.now
	e.idle.add(remoteIP(cn.client.Remote), 1)
}

// touchConn makes sure a connection the data plane hands frames from is
// known (a rerouted connection arrives this way).
func (e *Engine) touchConn(c *Client) {
	if _, known := e.conns[c.Socket]; known {
		return
	}
	e.conns[c.Socket] = &conn{client: *c, idleSince: e.now}
	e.idle.add(remoteIP(c.Remote), 1)
}

// expireConns closes connections that have held no allocation for
// ConnectionIdle.
func (e *Engine) expireConns(out *Output) {
	if e.cfg.ConnectionIdle <= 0 {
		return
	}
	limit := e.now - int64(e.cfg.ConnectionIdle)
	for s, cn := range e.conns {
		if cn.alloc == nil && cn.idleSince <= limit {
			e.forgetConn(s)
			out.add(Command{Op: OpCloseClient, Client: cn.client})
		}
	}
}
