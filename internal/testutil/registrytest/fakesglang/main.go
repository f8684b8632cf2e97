// Command fakesglang is a minimal stand-in for `python3 -m
// sglang.launch_server`, small enough to build in a test and ship in a
// scratch image. It parses the launch_server flags sglangd passes, logs like
// SGLang, and answers /health (503 until its warm-up ends), /model_info and
// /server_info, which echoes the command line and environment so tests can
// check what reached the container.
//
// Faults, through the environment:
//
//	FAKE_WARMUP=2s       /health answers 503 for this long
//	FAKE_EXIT_AFTER=1s   log an error and exit during start-up...
//	FAKE_EXIT_CODE=3     ...with this code (default 1)
//	FAKE_IGNORE_TERM=1   ignore SIGTERM (tests the stop grace period)
//
// The richer simulator for the rest of the project lives elsewhere; this one
// only has to behave like a server container's life cycle.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("2006-01-02 15:04:05"), fmt.Sprintf(format, args...))
}

func run(args []string) int {
	if len(args) < 2 || args[0] != "-m" || args[1] != "sglang.launch_server" {
		fmt.Fprintf(os.Stderr, "usage: python3 -m sglang.launch_server --model-path PATH [--host H] [--port P] ...\n")
		return 2
	}
	flags := map[string]string{"--host": "127.0.0.1", "--port": "30000", "--tp-size": "1"}
	var extra []string
	rest := args[2:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if !strings.HasPrefix(a, "--") {
			extra = append(extra, a)
			continue
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			flags[k] = v
			continue
		}
		if i+1 < len(rest) && !strings.HasPrefix(rest[i+1], "--") {
			flags[a] = rest[i+1]
			i++
			continue
		}
		flags[a] = "true"
	}
	fmt.Println("fakesglang: stdout is captured too")
	logf("server_args=%v", flags)
	if flags["--model-path"] == "" {
		logf("error: --model-path is required")
		return 2
	}
	if d := envDuration("FAKE_EXIT_AFTER"); d > 0 {
		time.Sleep(d)
		code, _ := strconv.Atoi(os.Getenv("FAKE_EXIT_CODE"))
		if code == 0 {
			code = 1
		}
		logf("Scheduler hit an exception: RuntimeError: CUDA error: no kernel image is available")
		logf("fakesglang: exiting with code %d", code)
		return code
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if os.Getenv("FAKE_IGNORE_TERM") != "" {
		stop()
		signal.Ignore(syscall.SIGTERM)
		ctx = context.Background()
	}

	var ready atomic.Bool
	start := time.Now()
	warmup := envDuration("FAKE_WARMUP")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /model_info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"model_path": flags["--model-path"], "is_generation": true})
	})
	mux.HandleFunc("GET /server_info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"args": args, "flags": flags, "extra": extra, "env": os.Environ(),
			"version": "0.0.0-fake", "uptime_s": time.Since(start).Seconds()})
	})
	ln, err := net.Listen("tcp", net.JoinHostPort(flags["--host"], flags["--port"]))
	if err != nil {
		logf("error: %v", err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	logf("Uvicorn running on http://%s (Press CTRL+C to quit)", ln.Addr())
	go func() {
		select {
		case <-time.After(warmup):
			ready.Store(true)
			logf("The server is fired up and ready to roll!")
		case <-ctx.Done():
		}
	}()
	<-ctx.Done()
	logf("Received sigterm, shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return 0
}

func envDuration(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
