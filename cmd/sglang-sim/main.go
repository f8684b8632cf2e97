// Command sglang-sim is a stand-in for SGLang's launch_server used by
// sglangd's tests and demo (see internal/sglangsim). It is not part of the
// sglangd release: it ships only inside the simulator image built by
// cmd/sglang-sim-image. Invoked through a python3 link it accepts
// `python3 -m sglang.launch_server --model-path ... --port ...`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/sglangd/sglangd/internal/sglangsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := sglangsim.Main(ctx, os.Args, os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
