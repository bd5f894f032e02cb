// Package listen owns ferry's contact with the host's network stack at
// start: opening the client-facing sockets described by config.Listener
// (SO_REUSEPORT UDP socket sets, TCP, TLS and DTLS listeners), the
// certificate store that TLS and DTLS read on every handshake, and detecting
// the host's addresses when the relay address is not configured.
package listen
