// Package auth owns ferry's long-term credentials (RFC 8489 §9.2): static
// users ("name=password" or coturn's precomputed "name=0x<md5 key>"), TURN
// REST API shared secrets (draft-uberti-behave-turn-rest, coturn's
// use-auth-secret) including rotation across several secrets, minting of REST
// credentials, and the pion turn.AuthHandler that answers from an immutable
// Snapshot swapped atomically on reload.
//
// Policy: a REST credential's expiry is checked on Allocate only, so calls
// survive their credential's expiry on Refresh, CreatePermission, ChannelBind
// and Connect.
//
// pion's AuthHandler returns a single key and never sees the message, so with
// several secrets it cannot know which one signed a credential. The edge
// package therefore calls Authenticator.Inspect (or Screen) with every
// authenticated STUN request before pion handles it; auth verifies
// MESSAGE-INTEGRITY against each secret and remembers the key that matched.
// Screen additionally answers refused credentials with 401 (REALM, NONCE),
// which pion v5.0.13 answers with a bare 400.
package auth
