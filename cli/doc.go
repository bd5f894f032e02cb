// Package cli owns ferry's command line: the cobra command tree (serve,
// version, config check, creds), turning the loaded configuration into
// opened sockets and a running server, signal handling (SIGHUP reload,
// SIGINT/SIGTERM shutdown) and exit codes.
package cli
