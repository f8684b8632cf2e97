package sglangsim

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// ServerArgs is the subset of SGLang's ServerArgs (python/sglang/srt/server_args.py)
// that the simulator interprets. Field names follow SGLang's snake_case so that
// /server_info serialises them the way the real server does.
type ServerArgs struct {
	ModelPath             string   `json:"model_path"`
	TokenizerPath         string   `json:"tokenizer_path"`
	ServedModelName       string   `json:"served_model_name"`
	Host                  string   `json:"host"`
	Port                  int      `json:"port"`
	TPSize                int      `json:"tp_size"`
	DPSize                int      `json:"dp_size"`
	PPSize                int      `json:"pp_size"`
	EPSize                int      `json:"ep_size"`
	NNodes                int      `json:"nnodes"`
	NodeRank              int      `json:"node_rank"`
	DistInitAddr          *string  `json:"dist_init_addr"`
	APIKey                *string  `json:"api_key"`
	AdminAPIKey           *string  `json:"admin_api_key"`
	EnableMetrics         bool     `json:"enable_metrics"`
	SkipServerWarmup      bool     `json:"skip_server_warmup"`
	DisableCUDAGraph      bool     `json:"disable_cuda_graph"`
	EnableProfileCUDAGrph bool     `json:"enable_profile_cuda_graph"`
	EnableDPAttention     bool     `json:"enable_dp_attention"`
	TrustRemoteCode       bool     `json:"trust_remote_code"`
	MemFractionStatic     *float64 `json:"mem_fraction_static"`
	WatchdogTimeout       float64  `json:"watchdog_timeout"`
	Dtype                 string   `json:"dtype"`
	ContextLength         *int     `json:"context_length"`
	ChunkedPrefillSize    int      `json:"chunked_prefill_size"`
	MaxRunningRequests    *int     `json:"max_running_requests"`
	RandomSeed            int      `json:"random_seed"`
	LogLevel              string   `json:"log_level"`
	BaseGPUID             int      `json:"base_gpu_id"`
	AttentionBackend      *string  `json:"attention_backend"`
	CUDAGraphMaxBS        *int     `json:"cuda_graph_max_bs"`

	// Unknown holds arguments the simulator does not model, in command-line
	// order. They are accepted (and logged) so launch commands written for
	// newer SGLang releases still start.
	Unknown []string `json:"-"`
}

// DefaultServerArgs returns SGLang's defaults for the modelled arguments.
func DefaultServerArgs() ServerArgs {
	return ServerArgs{
		Host:               "127.0.0.1",
		Port:               30000,
		TPSize:             1,
		DPSize:             1,
		PPSize:             1,
		EPSize:             1,
		NNodes:             1,
		WatchdogTimeout:    300,
		Dtype:              "auto",
		ChunkedPrefillSize: 8192,
		RandomSeed:         0,
		LogLevel:           "info",
	}
}

type argKind int

const (
	argString argKind = iota
	argOptString
	argInt
	argOptInt
	argFloat
	argOptFloat
	argBool
)

type argSpec struct {
	names []string
	kind  argKind
	field func(a *ServerArgs) any
}

var argSpecs = []argSpec{
	{[]string{"--model-path", "--model"}, argString, func(a *ServerArgs) any { return &a.ModelPath }},
	{[]string{"--tokenizer-path"}, argString, func(a *ServerArgs) any { return &a.TokenizerPath }},
	{[]string{"--served-model-name"}, argString, func(a *ServerArgs) any { return &a.ServedModelName }},
	{[]string{"--host"}, argString, func(a *ServerArgs) any { return &a.Host }},
	{[]string{"--port"}, argInt, func(a *ServerArgs) any { return &a.Port }},
	{[]string{"--tp-size", "--tp", "--tensor-parallel-size"}, argInt, func(a *ServerArgs) any { return &a.TPSize }},
	{[]string{"--dp-size", "--dp", "--data-parallel-size"}, argInt, func(a *ServerArgs) any { return &a.DPSize }},
	{[]string{"--pp-size", "--pp", "--pipeline-parallel-size"}, argInt, func(a *ServerArgs) any { return &a.PPSize }},
	{[]string{"--ep-size", "--ep", "--expert-parallel-size"}, argInt, func(a *ServerArgs) any { return &a.EPSize }},
	{[]string{"--nnodes"}, argInt, func(a *ServerArgs) any { return &a.NNodes }},
	{[]string{"--node-rank"}, argInt, func(a *ServerArgs) any { return &a.NodeRank }},
	{[]string{"--dist-init-addr"}, argOptString, func(a *ServerArgs) any { return &a.DistInitAddr }},
	{[]string{"--api-key"}, argOptString, func(a *ServerArgs) any { return &a.APIKey }},
	{[]string{"--admin-api-key"}, argOptString, func(a *ServerArgs) any { return &a.AdminAPIKey }},
	{[]string{"--enable-metrics"}, argBool, func(a *ServerArgs) any { return &a.EnableMetrics }},
	{[]string{"--skip-server-warmup"}, argBool, func(a *ServerArgs) any { return &a.SkipServerWarmup }},
	{[]string{"--disable-cuda-graph"}, argBool, func(a *ServerArgs) any { return &a.DisableCUDAGraph }},
	{[]string{"--enable-profile-cuda-graph"}, argBool, func(a *ServerArgs) any { return &a.EnableProfileCUDAGrph }},
	{[]string{"--enable-dp-attention"}, argBool, func(a *ServerArgs) any { return &a.EnableDPAttention }},
	{[]string{"--trust-remote-code"}, argBool, func(a *ServerArgs) any { return &a.TrustRemoteCode }},
	{[]string{"--mem-fraction-static"}, argOptFloat, func(a *ServerArgs) any { return &a.MemFractionStatic }},
	{[]string{"--watchdog-timeout"}, argFloat, func(a *ServerArgs) any { return &a.WatchdogTimeout }},
	{[]string{"--dtype"}, argString, func(a *ServerArgs) any { return &a.Dtype }},
	{[]string{"--context-length"}, argOptInt, func(a *ServerArgs) any { return &a.ContextLength }},
	{[]string{"--chunked-prefill-size"}, argInt, func(a *ServerArgs) any { return &a.ChunkedPrefillSize }},
	{[]string{"--max-running-requests"}, argOptInt, func(a *ServerArgs) any { return &a.MaxRunningRequests }},
	{[]string{"--random-seed"}, argInt, func(a *ServerArgs) any { return &a.RandomSeed }},
	{[]string{"--log-level"}, argString, func(a *ServerArgs) any { return &a.LogLevel }},
	{[]string{"--base-gpu-id"}, argInt, func(a *ServerArgs) any { return &a.BaseGPUID }},
	{[]string{"--attention-backend"}, argOptString, func(a *ServerArgs) any { return &a.AttentionBackend }},
	{[]string{"--cuda-graph-max-bs"}, argOptInt, func(a *ServerArgs) any { return &a.CUDAGraphMaxBS }},
}

func lookupArg(name string) (argSpec, bool) {
	// argparse also accepts underscores in our experience of user scripts; SGLang
	// only defines dashes, so only normalise the exact spelling.
	for _, s := range argSpecs {
		for _, n := range s.names {
			if n == name {
				return s, true
			}
		}
	}
	return argSpec{}, false
}

// ParseServerArgs parses launch_server arguments (everything after
// `-m sglang.launch_server`). Both `--flag value` and `--flag=value` are
// accepted. Unknown flags are kept in Unknown together with their value (the
// next token when it does not start with "--"). A missing --model-path or a
// malformed number is an error classified as invalid argument.
func ParseServerArgs(argv []string) (ServerArgs, error) {
	a := DefaultServerArgs()
	for i := 0; i < len(argv); i++ {
		tok := argv[i]
		if !strings.HasPrefix(tok, "-") {
			a.Unknown = append(a.Unknown, tok)
			continue
		}
		name, val, hasVal := strings.Cut(tok, "=")
		spec, ok := lookupArg(name)
		if !ok {
			a.Unknown = append(a.Unknown, tok)
			if !hasVal && i+1 < len(argv) && !strings.HasPrefix(argv[i+1], "--") {
				a.Unknown = append(a.Unknown, argv[i+1])
				i++
			}
			continue
		}
		if spec.kind == argBool {
			if hasVal {
				return a, fmt.Errorf("argument %s: ignored explicit argument %q: %w", name, val, errdefs.ErrInvalidArgument)
			}
			*(spec.field(&a).(*bool)) = true
			continue
		}
		if !hasVal {
			if i+1 >= len(argv) {
				return a, fmt.Errorf("argument %s: expected one argument: %w", name, errdefs.ErrInvalidArgument)
			}
			i++
			val = argv[i]
		}
		if err := setArg(spec, &a, val); err != nil {
			return a, fmt.Errorf("argument %s: %w", name, err)
		}
	}
	if a.ModelPath == "" {
		return a, fmt.Errorf("the following arguments are required: --model-path: %w", errdefs.ErrInvalidArgument)
	}
	if a.TokenizerPath == "" {
		a.TokenizerPath = a.ModelPath
	}
	if a.ServedModelName == "" {
		a.ServedModelName = a.ModelPath
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"--tp-size", a.TPSize}, {"--dp-size", a.DPSize}, {"--pp-size", a.PPSize}, {"--ep-size", a.EPSize}} {
		if v.n < 1 {
			return a, fmt.Errorf("argument %s: must be at least 1, got %d: %w", v.name, v.n, errdefs.ErrInvalidArgument)
		}
	}
	if a.Port < 0 || a.Port > 65535 {
		return a, fmt.Errorf("argument --port: %d is not a TCP port: %w", a.Port, errdefs.ErrInvalidArgument)
	}
	return a, nil
}

func setArg(spec argSpec, a *ServerArgs, val string) error {
	switch p := spec.field(a).(type) {
	case *string:
		*p = val
	case **string:
		v := val
		*p = &v
	case *int:
		n, err := strconv.Atoi(val)
		if err != nil {
			return fmt.Errorf("invalid int value: %q: %w", val, errdefs.ErrInvalidArgument)
		}
		*p = n
	case **int:
		n, err := strconv.Atoi(val)
		if err != nil {
			return fmt.Errorf("invalid int value: %q: %w", val, errdefs.ErrInvalidArgument)
		}
		*p = &n
	case *float64:
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return fmt.Errorf("invalid float value: %q: %w", val, errdefs.ErrInvalidArgument)
		}
		*p = f
	case **float64:
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return fmt.Errorf("invalid float value: %q: %w", val, errdefs.ErrInvalidArgument)
		}
		*p = &f
	default:
		return fmt.Errorf("internal: unsupported argument type %T", p)
	}
	return nil
}
