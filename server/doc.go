// Package server assembles ferry's TURN server: it takes the configuration
// and sockets its caller already opened, wraps each socket with the edge
// layer, builds pion's turn.Server with ferry's handlers (auth, peer policy,
// relay ports, quotas, events), and closes it all once. It also adapts pion's
// logger to slog.
package server
