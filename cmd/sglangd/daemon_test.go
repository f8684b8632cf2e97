package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/config"
)

// testConfig returns defaults on a temp data dir and socket. The HF
// endpoint is a closed loopback port: tests never leave 127.0.0.0/8, and the
// doctor probes the endpoint.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.API.Socket = filepath.Join(dir, "s.sock")
	cfg.API.SocketGroup = ""
	cfg.Model.Endpoint = "http://127.0.0.1:9"
	return cfg
}

// startInProcess runs the daemon with cfg in this process until the test
// ends (a clean stop is asserted) and returns a client once it is ready.
func startInProcess(t *testing.T, cfg config.Config) (*api.Client, context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, cfg, "", flags{}, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon stopped with %v", err)
		}
	})
	c, err := api.NewClient("unix://" + cfg.API.Socket)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if h, err := c.Ready(ctx); err == nil && h.Status == "ready" {
			return c, ctx
		}
		select {
		case err := <-done:
			t.Fatalf("daemon exited before it was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon not ready within 10s")
		}
	}
}
