package sglangsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Exit statuses of Main.
const (
	ExitOK      = 0
	ExitError   = 1
	ExitUsage   = 2   // argparse's status for bad arguments
	ExitCrashed = 131 // SGLang kills its process tree with SIGQUIT after a scheduler crash
)

// Main is the command-line entry point. Invoked as python3/python it
// behaves like `python3 -m sglang.launch_server ...` (the way containers are
// started); as nvidia_entrypoint.sh it prints the NGC banner and execs its
// arguments; under any other name it takes launch_server arguments directly.
// --sim-<knob>=value flags and SGLANG_SIM_<KNOB> variables set SimOptions.
// Logs go to stderr as Python's logging does. It returns the exit status.
func Main(ctx context.Context, argv []string, environ []string, stdout, stderr io.Writer) int {
	env := envMap(environ)
	base := filepath.Base(argv[0])
	args := argv[1:]
	switch {
	case base == "nvidia_entrypoint.sh":
		return entrypoint(args, environ, stdout, stderr)
	case strings.HasPrefix(base, "python"):
		if len(args) == 1 && (args[0] == "--version" || args[0] == "-V") {
			fmt.Fprintln(stdout, "Python 3.12.3")
			return ExitOK
		}
		if len(args) == 0 || args[0] != "-m" || len(args) < 2 {
			fmt.Fprintf(stderr, "%s: this image's python3 only runs `-m sglang.launch_server` (SGLang simulator)\n", argv[0])
			return ExitUsage
		}
		if args[1] != "sglang.launch_server" {
			fmt.Fprintf(stderr, "/usr/bin/python3: No module named %s\n", args[1])
			return ExitError
		}
		args = args[2:]
	default:
		if len(args) >= 2 && args[0] == "-m" && args[1] == "sglang.launch_server" {
			args = args[2:]
		}
	}
	for _, a := range args {
		if a == "-h" || a == "--help" {
			usage(stdout)
			return ExitOK
		}
	}

	var sim SimOptions
	if err := sim.ApplyEnv(env); err != nil {
		fmt.Fprintf(stderr, "sglang-sim: %v\n", err)
		return ExitUsage
	}
	var rest []string
	for i := 0; i < len(args); i++ {
		name, val, hasVal := strings.Cut(args[i], "=")
		if !strings.HasPrefix(name, "--sim-") {
			rest = append(rest, args[i])
			continue
		}
		if !hasVal {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				i++
				val = args[i]
			} else {
				val = "true"
			}
		}
		ok, err := sim.applySimFlag(name, val)
		if err != nil {
			fmt.Fprintf(stderr, "sglang-sim: %v\n", err)
			return ExitUsage
		}
		if !ok {
			fmt.Fprintf(stderr, "sglang-sim: unknown simulator flag %s (see --help)\n", name)
			return ExitUsage
		}
	}
	sa, err := ParseServerArgs(rest)
	if err == nil && sim.StrictArgs && len(sa.Unknown) > 0 {
		err = fmt.Errorf("unrecognized arguments: %s", strings.Join(sa.Unknown, " "))
	}
	if err != nil {
		fmt.Fprintf(stderr, "usage: launch_server.py [-h] --model-path MODEL_PATH [--host HOST] [--port PORT] [--tp-size TP_SIZE] ...\nlaunch_server.py: error: %s\n", strings.TrimSuffix(err.Error(), ": invalid argument"))
		return ExitUsage
	}
	if sim.IgnoreSIGTERM {
		defer ignoreSIGTERM(newLineLog(stderr))()
	}
	srv, err := start(ctx, Config{Args: sa, Env: env, Sim: sim, Log: stderr}, true)
	if err != nil {
		fmt.Fprintf(stderr, "sglang-sim: %v\n", err)
		return ExitError
	}
	<-srv.Done()
	if err := srv.Err(); err != nil {
		if errors.Is(err, ErrCrashed) {
			if sim.CrashExitCode != nil {
				return *sim.CrashExitCode
			}
			return ExitCrashed
		}
		return ExitError
	}
	return ExitOK
}

// ignoreSIGTERM takes SIGTERM away from every earlier signal.Notify (the
// context cmd/sglang-sim passes to Main) and logs each one instead, until
// the returned function is called.
func ignoreSIGTERM(log *lineLog) (restore func()) {
	signal.Ignore(syscall.SIGTERM)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				log.printf("", "Received SIGTERM; ignored (SGLANG_SIM_IGNORE_SIGTERM): the server only stops on SIGINT or SIGKILL")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// entrypoint imitates NGC's /opt/nvidia/nvidia_entrypoint.sh: print the
// banner, then exec the command (PATH lookup, as `exec "$@"` does).
func entrypoint(args, environ []string, stdout, stderr io.Writer) int {
	fmt.Fprint(stdout, "\n=============\n== SGLang ==\n=============\n\nNVIDIA Release 26.01 (simulated by sglangd's sglang-sim; no GPU code runs)\n\n")
	if len(args) == 0 {
		return ExitOK
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "/opt/nvidia/nvidia_entrypoint.sh: line 67: exec: %s: not found\n", args[0])
		return 127
	}
	if err := syscall.Exec(path, args, environ); err != nil {
		fmt.Fprintf(stderr, "exec %s: %v\n", path, err)
		return 126
	}
	return ExitOK
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: python3 -m sglang.launch_server --model-path MODEL_PATH [options]

SGLang simulator (sglangd test stand-in). Accepts launch_server arguments:
`)
	var names []string
	for _, s := range argSpecs {
		names = append(names, strings.Join(s.names, ", "))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", n)
	}
	fmt.Fprint(w, "Unknown arguments are accepted and logged.\n\nSimulator knobs (flag --sim-<name> or environment):\n")
	for _, e := range simEnv {
		flag := "--sim-" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e.name, "SGLANG_SIM_")), "_", "-")
		fmt.Fprintf(w, "  %-32s %-30s %s\n", flag, e.name, e.help)
	}
	fmt.Fprint(w, "\nSGLang environment honoured: SGLANG_TORCH_PROFILER_DIR, TMPDIR, SGLANG_PROFILE_WITH_STACK,\nSGLANG_PROFILE_RECORD_SHAPES, SGLANG_HEALTH_CHECK_TIMEOUT, SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION.\n")
}
