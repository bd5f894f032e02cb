// Package proxyproto reads the PROXY protocol version 2 header
// (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt, section
// 2.2) that a load balancer (AWS NLB, HAProxy, a Kubernetes LoadBalancer)
// sends at the start of a TCP connection to say which client it carries.
//
// Parse reads exactly one header from a reader and nothing after it, so the
// connection's own bytes (STUN frames, a TLS ClientHello) follow untouched;
// Read does the same on a net.Conn within a deadline. Every read is bounded:
// 16 fixed bytes, then an address block of at most MaxBlockLen bytes. The
// version 1 text header is recognised and refused with an error saying so.
//
// Whether a header is believed at all is the caller's decision: only a
// connection from a trusted proxy may carry one.
package proxyproto
