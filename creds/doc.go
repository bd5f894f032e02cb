// Package creds owns what a browser is handed: a short-lived TURN REST
// credential and the RTCPeerConnection iceServers list built from ferry's
// advertised address and listeners. The CLI (`ferry creds`, the start-up
// banner) and the HTTP credentials API both answer with it.
package creds
