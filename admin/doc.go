// Package admin owns ferry's admin API under /v1/admin/ on the HTTP
// listener, guarded by its own bearer token (http.admin-token, compared in
// constant time; 401 without it):
//
//	GET    /v1/admin/allocations                 live allocations as JSON
//	DELETE /v1/admin/allocations/{relay}          close one (relay IP:PORT)
//	DELETE /v1/admin/users/{user}/allocations     close all of one user's
//
// It reads and acts through a Table, the engine's allocation table
// (dataplane.Server): closing an allocation ends it in its engine shard,
// which closes its relay sockets at once; the client's next Refresh gets
// 437, so it reallocates instead of waiting for a timeout.
package admin
