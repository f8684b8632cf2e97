package sglangsim

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// DefaultVersion is the SGLang version /server_info reports unless
// SimOptions.Version overrides it.
const DefaultVersion = "0.5.8"

// Config configures one simulated server.
type Config struct {
	// Args are the launch_server arguments (see ParseServerArgs).
	Args ServerArgs
	// Env is the scheduler processes' environment: SGLANG_TORCH_PROFILER_DIR,
	// TMPDIR, SGLANG_PROFILE_WITH_STACK, SGLANG_PROFILE_RECORD_SHAPES,
	// SGLANG_HEALTH_CHECK_TIMEOUT and SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION
	// are read from it, never from the test process's own environment.
	Env map[string]string
	// Sim holds timing, trace-size and fault knobs.
	Sim SimOptions
	// Log receives SGLang's log lines; nil discards them.
	Log io.Writer
	// Listener, when set, is served instead of listening on Args.Host:Args.Port
	// (tests pass a 127.0.0.1:0 listener).
	Listener net.Listener
}

// SimOptions are the simulator's own knobs. The zero value of every field
// means "the default" as documented on the field, so tests set only what they
// need.
type SimOptions struct {
	// Version is reported by /server_info; default DefaultVersion.
	Version string
	// LoadTime is how long model loading takes before the warm-up request
	// is sent (/health answers 503 meanwhile); default 2 s. Negative means none.
	LoadTime time.Duration
	// DecodeStepTime is the duration of one decode batch; default 8 ms.
	DecodeStepTime time.Duration
	// PrefillTokenTime is the time per prefill token added to a decode step's
	// time for an EXTEND batch; default 20 µs.
	PrefillTokenTime time.Duration
	// TokenizeTime is the per-request HTTP-side latency before a request
	// reaches the scheduler; default 0.
	TokenizeTime time.Duration
	// ExportPerMB is the time spent per MB of uncompressed trace JSON while
	// the gzip file is written (so the file visibly grows); default 20 ms.
	// Negative means no delay.
	ExportPerMB time.Duration
	// HealthPollInterval is how often /health checks for scheduler output;
	// SGLang sleeps 1 s per check, which is the default.
	HealthPollInterval time.Duration
	// Layers is the number of transformer layers emitted per step in the
	// generated traces (size scales linearly); default 36 (Qwen3-8B).
	Layers int
	// NodeGPUs is the number of GPUs listed in deviceProperties; default
	// max(8, ranks on the node).
	NodeGPUs int
	// Seed makes generated traces deterministic; default 1.
	Seed int64
	// PID is the OS pid of the first scheduler process in traces; default 178.
	PID int

	// LoadError makes model loading fail with this exception, as a CUDA
	// out-of-memory error or a bad checkpoint does: after LoadTime the first
	// scheduler logs "Scheduler hit an exception" with a traceback ending in
	// LoadError, the launcher logs the SIGQUIT it got, and the server exits
	// before its HTTP port opens (Main) or before the warm-up (Start).
	LoadError string
	// WarmupError makes the warm-up fail: the server logs
	// "Initialization failed. warmup error: <WarmupError>" and exits.
	WarmupError string
	// CrashExitCode is Main's exit status when the server dies (LoadError,
	// WarmupError, CrashAtStep); nil means ExitCrashed. How a real server
	// ends after kill_process_tree varies: 131 (SIGQUIT), 137 (SIGKILL),
	// or 0 as a container's PID 1, which cannot SIGKILL itself and falls
	// through to sys.exit(0).
	CrashExitCode *int
	// IgnoreSIGTERM makes Main ignore SIGTERM (each one is logged), as a
	// server whose scheduler hangs in a CUDA or NCCL call does: `docker
	// stop` then kills it after its grace period. SIGINT still stops it.
	// It changes the signal handling of the whole process, so only Main
	// honours it.
	IgnoreSIGTERM bool
	// CrashAtStep makes the scheduler raise an exception when its forward
	// counter reaches this value (0 = never); the server then exits.
	CrashAtStep int
	// HangStopProfile makes the trace export never finish: /stop_profile
	// never answers and the scheduler stays blocked (health 503) until the
	// server is closed.
	HangStopProfile bool
	// CorruptRank selects one rank (global index: (dp*pp+pp)*tp+tp) whose
	// trace file is damaged according to CorruptMode; nil = none.
	CorruptRank *int
	// CorruptMode is "truncate" (gzip stream cut in the middle; the default)
	// or "corrupt" (bytes flipped inside the compressed data).
	CorruptMode string
	// MissingRank selects one rank whose trace file is never written; nil = none.
	MissingRank *int
	// SlowResponse delays every HTTP response by this much.
	SlowResponse time.Duration
	// StrictArgs rejects unknown launch_server arguments the way argparse
	// does (exit status 2) instead of accepting and logging them.
	StrictArgs bool
}

// testEnv holds the fast test timings, as variables so that containers can
// get them too (TestEnv); TestOptions parses it.
var testEnv = map[string]string{
	"SGLANG_SIM_LOAD_TIME":          "1ms",
	"SGLANG_SIM_DECODE_STEP_TIME":   "1ms",
	"SGLANG_SIM_PREFILL_TOKEN_TIME": "1us",
	"SGLANG_SIM_EXPORT_PER_MB":      "-1ns",
	"SGLANG_SIM_HEALTH_POLL":        "5ms",
	"SGLANG_SIM_LAYERS":             "2",
}

// TestOptions returns SimOptions suited to other packages' tests: 1 ms model
// load and batches, 5 ms health polls, two layers per traced step and no
// export delay, so a whole start/traffic/stop cycle takes well under a second
// even under -race. Adjust fields (faults, ExportPerMB) as needed.
func TestOptions() SimOptions {
	var o SimOptions
	if err := o.ApplyEnv(testEnv); err != nil {
		panic(err) // testEnv is a constant table; TestTestEnv checks it
	}
	return o
}

// TestEnv returns TestOptions as SGLANG_SIM_* variables ("KEY=value",
// sorted), for simulator containers: put them in the image's or the
// container's environment.
func TestEnv() []string {
	out := make([]string, 0, len(testEnv))
	for k, v := range testEnv {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// IntPtr returns a pointer to n, for SimOptions.CorruptRank and MissingRank.
func IntPtr(n int) *int { return &n }

func (o SimOptions) withDefaults() SimOptions {
	if o.Version == "" {
		o.Version = DefaultVersion
	}
	if o.LoadTime == 0 {
		o.LoadTime = 2 * time.Second
	}
	if o.LoadTime < 0 {
		o.LoadTime = 0
	}
	if o.DecodeStepTime <= 0 {
		o.DecodeStepTime = 8 * time.Millisecond
	}
	if o.PrefillTokenTime <= 0 {
		o.PrefillTokenTime = 20 * time.Microsecond
	}
	if o.ExportPerMB == 0 {
		o.ExportPerMB = 20 * time.Millisecond
	}
	if o.ExportPerMB < 0 {
		o.ExportPerMB = 0
	}
	if o.HealthPollInterval <= 0 {
		o.HealthPollInterval = time.Second
	}
	if o.Layers <= 0 {
		o.Layers = 36
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.PID <= 0 {
		o.PID = 178
	}
	if o.CorruptMode == "" {
		o.CorruptMode = "truncate"
	}
	return o
}

// simEnv lists the SGLANG_SIM_* variables and the SimOptions field each sets,
// for ApplyEnv and the command's --help text.
var simEnv = []struct {
	name, help string
	set        func(o *SimOptions, v string) error
}{
	{"SGLANG_SIM_VERSION", "SGLang version reported by /server_info", func(o *SimOptions, v string) error { o.Version = v; return nil }},
	{"SGLANG_SIM_LOAD_TIME", "model load time before warm-up (Go duration)", durSetter(func(o *SimOptions) *time.Duration { return &o.LoadTime })},
	{"SGLANG_SIM_DECODE_STEP_TIME", "duration of a decode batch", durSetter(func(o *SimOptions) *time.Duration { return &o.DecodeStepTime })},
	{"SGLANG_SIM_PREFILL_TOKEN_TIME", "prefill time per token", durSetter(func(o *SimOptions) *time.Duration { return &o.PrefillTokenTime })},
	{"SGLANG_SIM_TOKENIZE_TIME", "HTTP-side latency per request", durSetter(func(o *SimOptions) *time.Duration { return &o.TokenizeTime })},
	{"SGLANG_SIM_EXPORT_PER_MB", "trace export time per MB of JSON", durSetter(func(o *SimOptions) *time.Duration { return &o.ExportPerMB })},
	{"SGLANG_SIM_HEALTH_POLL", "health check poll interval", durSetter(func(o *SimOptions) *time.Duration { return &o.HealthPollInterval })},
	{"SGLANG_SIM_LAYERS", "transformer layers per traced step", intSetter(func(o *SimOptions) *int { return &o.Layers })},
	{"SGLANG_SIM_NODE_GPUS", "GPUs listed in deviceProperties", intSetter(func(o *SimOptions) *int { return &o.NodeGPUs })},
	{"SGLANG_SIM_SEED", "trace generator seed", func(o *SimOptions, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		o.Seed = n
		return err
	}},
	{"SGLANG_SIM_PID", "pid of the first scheduler in traces", intSetter(func(o *SimOptions) *int { return &o.PID })},
	{"SGLANG_SIM_LOAD_ERROR", "fail model loading with this exception (e.g. torch.OutOfMemoryError: CUDA out of memory)", func(o *SimOptions, v string) error { o.LoadError = v; return nil }},
	{"SGLANG_SIM_WARMUP_ERROR", "fail warm-up with this message", func(o *SimOptions, v string) error { o.WarmupError = v; return nil }},
	{"SGLANG_SIM_CRASH_EXIT_CODE", "exit status after a crash or failed start-up (default 131)", func(o *SimOptions, v string) error {
		n, err := strconv.Atoi(v)
		if err == nil && (n < 0 || n > 255) {
			err = fmt.Errorf("want 0-255, got %d", n)
		}
		o.CrashExitCode = &n
		return err
	}},
	{"SGLANG_SIM_IGNORE_SIGTERM", "ignore SIGTERM like a hung server; docker stop must kill it (true/false)", func(o *SimOptions, v string) error {
		b, err := strconv.ParseBool(v)
		o.IgnoreSIGTERM = b
		return err
	}},
	{"SGLANG_SIM_CRASH_AT_STEP", "scheduler crashes at this forward step", intSetter(func(o *SimOptions) *int { return &o.CrashAtStep })},
	{"SGLANG_SIM_HANG_STOP_PROFILE", "trace export never finishes (true/false)", func(o *SimOptions, v string) error {
		b, err := strconv.ParseBool(v)
		o.HangStopProfile = b
		return err
	}},
	{"SGLANG_SIM_CORRUPT_RANK", "global rank whose trace is damaged", func(o *SimOptions, v string) error {
		n, err := strconv.Atoi(v)
		o.CorruptRank = &n
		return err
	}},
	{"SGLANG_SIM_CORRUPT_MODE", "truncate or corrupt", func(o *SimOptions, v string) error {
		if v != "truncate" && v != "corrupt" {
			return fmt.Errorf("want truncate or corrupt, got %q", v)
		}
		o.CorruptMode = v
		return nil
	}},
	{"SGLANG_SIM_MISSING_RANK", "global rank whose trace is not written", func(o *SimOptions, v string) error {
		n, err := strconv.Atoi(v)
		o.MissingRank = &n
		return err
	}},
	{"SGLANG_SIM_SLOW_RESPONSE", "delay added to every HTTP response", durSetter(func(o *SimOptions) *time.Duration { return &o.SlowResponse })},
	{"SGLANG_SIM_STRICT_ARGS", "reject unknown arguments like argparse (true/false)", func(o *SimOptions, v string) error {
		b, err := strconv.ParseBool(v)
		o.StrictArgs = b
		return err
	}},
}

func durSetter(f func(*SimOptions) *time.Duration) func(*SimOptions, string) error {
	return func(o *SimOptions, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*f(o) = d
		return nil
	}
}

func intSetter(f func(*SimOptions) *int) func(*SimOptions, string) error {
	return func(o *SimOptions, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		*f(o) = n
		return nil
	}
}

// ApplyEnv sets o's fields from SGLANG_SIM_* variables present in env. A
// malformed value is an invalid-argument error naming the variable.
func (o *SimOptions) ApplyEnv(env map[string]string) error {
	for _, e := range simEnv {
		v, ok := env[e.name]
		if !ok || v == "" {
			continue
		}
		if err := e.set(o, v); err != nil {
			return fmt.Errorf("environment %s=%q (%s): %v: %w", e.name, v, e.help, err, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// applySimFlag handles a --sim-<name>[=value] argument, the command-line form
// of SGLANG_SIM_<NAME>. It reports whether the flag was one of ours.
func (o *SimOptions) applySimFlag(name, val string) (bool, error) {
	if !strings.HasPrefix(name, "--sim-") {
		return false, nil
	}
	env := "SGLANG_SIM_" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(name, "--sim-"), "-", "_"))
	for _, e := range simEnv {
		if e.name == env {
			if err := e.set(o, val); err != nil {
				return true, fmt.Errorf("flag %s=%q (%s): %v: %w", name, val, e.help, err, errdefs.ErrInvalidArgument)
			}
			return true, nil
		}
	}
	return false, nil
}

// envBool reads an SGLang boolean environment variable the way its EnvBool
// does: "true"/"1"/"yes" style values, default when unset.
func envBool(env map[string]string, name string, def bool) bool {
	v, ok := env[name]
	if !ok || v == "" {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "y", "on":
		return true
	case "0", "false", "no", "n", "off":
		return false
	}
	return def
}

// envSeconds reads a duration given in (possibly fractional) seconds.
func envSeconds(env map[string]string, name string, def time.Duration) time.Duration {
	v, ok := env[name]
	if !ok || v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return def
	}
	return time.Duration(f * float64(time.Second))
}
