// Package auth owns ferry's long-term credentials (RFC 8489 §9.2): static
// users ("name=password" or coturn's precomputed "name=0x<md5 key>"), TURN
// REST API shared secrets (draft-uberti-behave-turn-rest, coturn's
// use-auth-secret) including rotation across several secrets, and minting
// of REST credentials. A Snapshot is one immutable set of them; a Store
// holds the snapshot in force, swapped atomically on reload.
//
// Snapshot.Credential turns a user name into the candidate long-term keys
// the engine checks a request's MESSAGE-INTEGRITY with, the quota user it
// counts against and, for a REST credential, its expiry. The engine checks
// the expiry on Allocate only and keeps the key an allocation was granted
// with, so calls outlive their credential and the secret that signed it.
package auth
