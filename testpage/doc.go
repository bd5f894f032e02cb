// Package testpage owns ferry's "Does my TURN work?" page and the status
// endpoint it reads, both served on http.listen.
//
// GET / is a static page embedded in the binary (ui/index.html with
// ui/app.js and ui/app.css under /ui/; plain JavaScript, no library, no
// build step). It gets a credential from the credentials API (POST
// /v1/credentials, same origin, with an optional API key), from a pasted
// iceServers list or from a URL, user name and credential; then it tests
// each STUN and TURN URL on its own RTCPeerConnection (relay only for
// TURN), shows the candidates gathered, the time to the first relay
// candidate and, on failure, the ICE server error with its likely cause
// and fix; then it opens a relay-only data channel between two
// RTCPeerConnections of the page through the first working TURN URL and
// measures the round-trip time and the throughput. Each verdict is also in
// data attributes (data-url, data-status, data-cause) for tests.
//
// GET /v1/status answers, without authentication, only what is not
// secret: version, realm, the listeners' URLs as handed to clients, live
// allocations, the relayed packet and byte totals (the counters of
// ferry_relay_packets_total and ferry_relay_bytes_total), whether ferry
// drains, and the server's clock (so the page can point at clock skew
// when a REST credential is refused). It has no CORS headers: only the
// page ferry serves itself reads it.
//
// Every answer carries a Content-Security-Policy that allows scripts,
// styles and connections from the page's own origin only (no inline
// script), X-Content-Type-Options: nosniff and a no-referrer policy.
package testpage
