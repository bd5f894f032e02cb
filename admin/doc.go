// Package admin owns ferry's admin API under /v1/admin/ on the HTTP
// listener, guarded by its own bearer token (http.admin-token, compared in
// constant time; 401 without it):
//
//	GET    /v1/admin/allocations                 live allocations as JSON
//	DELETE /v1/admin/allocations/{relay}          close one (relay IP:PORT)
//	DELETE /v1/admin/users/{user}/allocations     close all of one user's
//
// It reads and acts through a relay.Tracker: closing an allocation closes
// its relay socket, pion then deletes the allocation, and the client's next
// Refresh fails with 437 while its ChannelData goes nowhere.
package admin
