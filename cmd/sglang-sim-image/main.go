// Command sglang-sim-image builds the SGLang simulator container image
// (internal/sglangsim/simimage) without a registry or a base image, and loads
// it into the local Docker engine, writes a `docker load` tarball, or pushes
// it to a registry. `make sim-image` runs it with -load.
//
//	go run ./cmd/sglang-sim-image -tag sglangd/sglang-sim:dev -load
//	go run ./cmd/sglang-sim-image -o sim.tar
//	go run ./cmd/sglang-sim-image -push 127.0.0.1:5000/nvidia/sglang:26.01-py3
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/moby/moby/client"

	"github.com/sglangd/sglangd/internal/sglangsim/simimage"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run() error {
	tag := flag.String("tag", simimage.DefaultTag, "image tag for -load and -o")
	load := flag.Bool("load", false, "load the image into the Docker engine (DOCKER_HOST or the default socket)")
	out := flag.String("o", "", "write a `docker load` tarball to this path")
	push := flag.String("push", "", "push the image to this reference (plain HTTP for loopback registries)")
	binary := flag.String("binary", "", "use this static linux sglang-sim binary instead of building one")
	cuda := flag.String("cuda-version", simimage.DefaultCUDAVersion, "CUDA_VERSION and com.nvidia.cuda.version of the image")
	flag.Parse()
	if !*load && *out == "" && *push == "" {
		return fmt.Errorf("nothing to do: pass -load, -o PATH or -push REF")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	img, err := simimage.Build(ctx, simimage.Options{Binary: *binary, CUDAVersion: *cuda})
	if err != nil {
		return err
	}
	dg, err := img.Digest()
	if err != nil {
		return err
	}
	if *out != "" {
		if err := simimage.WriteTarball(*out, *tag, img); err != nil {
			return err
		}
		fmt.Printf("wrote %s (%s, %s)\n", *out, *tag, dg)
	}
	if *load {
		api, err := client.New(client.FromEnv)
		if err != nil {
			return fmt.Errorf("docker client: %w", err)
		}
		defer api.Close()
		if _, err := simimage.Load(ctx, api, img, *tag); err != nil {
			return err
		}
		fmt.Printf("loaded %s (%s)\n", *tag, dg)
	}
	if *push != "" {
		if err := simimage.Push(ctx, img, *push); err != nil {
			return err
		}
		fmt.Printf("pushed %s (%s)\n", *push, dg)
	}
	return nil
}
