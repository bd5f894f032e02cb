// Command ferry is a STUN/TURN server for WebRTC. See `ferry --help`.
package main

import (
	"os"

	"github.com/ferryrtc/ferry/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
