// Package browser runs ferry against a real browser: headless Chromium
// (Debian's chromium, driven by Playwright from driver.mjs) opens WebRTC data
// channels that can only go through ferry's TURN relay.
//
// The tests build ./cmd/ferry once per run (with -race when the tests run
// with it), start `ferry serve` on free 127.0.0.1 ports with the credentials
// API on, serve the pages in testdata/ (or run the PeerJS example's own
// server, examples/peerjs) and run `node driver.mjs` with a scenario. They
// cover TURN over UDP, TCP and TLS with getStats() proving a relay
// candidate on ferry's relay address, the PeerJS example with a real
// PeerServer, the refusal of an expired credential, and ferry's own test
// page (TestTestPage: every verdict it shows for working URLs, a wrong
// credential, stopped listeners and a refused origin, with screenshots
// saved to $FERRY_ARTIFACTS when set).
//
// Chromium uses relay candidates on loopback, so every address is on
// 127.0.0.1 (ferry runs with --allow-loopback-peers); no network namespace
// is needed. TLS uses a self-signed certificate made per test, and Chromium
// runs with --ignore-certificate-errors.
//
// The offload pass (scripts/test.sh offload-e2e) runs TestRelayDataChannel
// and TestPeerJSExample again inside a network namespace of its own with
// FERRY_TEST_OFFLOAD=lo: every ferry then runs with --relay-offload tc
// --relay-offload-interface lo, a test fails unless ferry logged its kernel
// fast path on, and where Chromium relays over UDP (it binds channels
// there) ferry's metrics must show the kernel relaying ChannelData from one
// page's channel to the other's (testutil.RequireOffloaded). Chromium
// gathers no candidates in a namespace with loopback alone, so that one
// also holds a veth pair with an address of its own. Without
// FERRY_TEST_OFFLOAD nothing changes.
//
// Tools come from `bash scripts/install-test-deps.sh browser` (chromium,
// node, npm ci here and in examples/peerjs). A missing tool skips the tests
// locally and fails them when CI=true.
package browser
