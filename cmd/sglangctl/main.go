// Command sglangctl is the command line of sglangd: a thin client of the
// daemon's REST API (package api), plus offline trace tools that need no
// daemon. Exit codes: 0 ok, 1 failure, 2 usage error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sglangd/sglangd/internal/cliutil"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cliutil.Execute(ctx, newRootCmd(os.Stdout, os.Stderr), os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
