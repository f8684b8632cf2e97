// Command sglangd is the sglangd daemon: it serves the API on a unix socket
// (and optionally TCP), keeps state in SQLite under its data directory, and
// runs profiling sessions. This package only wires the pieces together.
package main

import (
	"context"
	"os"

	"github.com/sglangd/sglangd/internal/cliutil"
)

func main() {
	os.Exit(cliutil.Execute(context.Background(), newRootCmd(os.Stdout, os.Stderr), os.Args[1:], os.Stderr))
}
