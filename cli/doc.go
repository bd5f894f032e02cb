// Package cli owns ferry's command line: the cobra command tree (serve,
// version, config check, creds, probe, bench, healthcheck), turning the
// loaded configuration into opened sockets and a running server with its
// HTTP listener (credentials API, metrics, health, admin), signal handling
// (SIGHUP reload, SIGTERM drain, SIGINT shutdown) and exit codes.
package cli
