// Package ratelimit holds ferry's lock-free rate limiters: a GCRA (generic
// cell rate algorithm) token bucket kept in one atomic word, and a
// fixed-size table of such buckets keyed by client IP address (IPv6 by its
// /64) that forgets old addresses by overwriting them. Nothing here locks or
// allocates after construction, so the per-packet paths of relay (bandwidth
// caps) and edge (per-IP request limits) can use it.
package ratelimit
