// Package httpapi owns ferry's credentials API, POST /v1/credentials: it
// mints a short-lived TURN REST credential with the iceServers list a browser
// passes to RTCPeerConnection or PeerJS, so no web app has to ship the shared
// secret.
//
// Callers authenticate with "Authorization: Bearer <api key>" (keys compared
// in constant time). Browser pages may call it only from the CORS allow
// list: preflights are answered for allowed origins only, and any other
// Origin gets 403 and a preflight that allows nothing. Every answer to a
// page, errors included, echoes its origin in Access-Control-Allow-Origin so
// the page can read the JSON error saying what to change. With
// AllowAnonymousOrigins a page on an allowed origin may call without a key
// (off by default). Refusals are logged at info, a few a minute at most.
//
// Credentials are rate-limited per API key and, for calls without a valid
// key, per client IP (IPv6 per /64), in bounded LRU maps; a limited call gets
// 429 with Retry-After. Bad input gets a 4xx JSON error naming the field:
// {"error": "...", "field": "ttl"}.
//
// The keys, origins, limits and TTL cap form an immutable Policy that the
// handler reads from an atomic pointer per request; SIGHUP builds a new one
// and swaps it in (API.Swap). Credentials are signed by the auth.Snapshot
// current at the time of the request, so secret rotation needs nothing here.
package httpapi
