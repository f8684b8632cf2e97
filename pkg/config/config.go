// Package config defines sglangd's configuration file: its schema and
// defaults, strict parsing (unknown keys are errors), environment overrides
// for secrets and paths, and validation that reports every bad field at
// once with its path and what was expected.
//
// Parsing has no side effects: it neither creates directories nor sets up
// logging. cmd/sglangd maps each section onto the Options of the package
// that owns it; leaf packages never import config.
package config

import (
	"fmt"
	"time"
)

// CurrentVersion is the config schema version this build understands.
const CurrentVersion = 1

// Config is the whole configuration file.
type Config struct {
	// Version of the file's schema; 1 today.
	Version int `yaml:"version" json:"version"`
	// DataDir holds the state database, sessions' artifacts and by default
	// the model cache.
	DataDir  string         `yaml:"data_dir" json:"data_dir"`
	Log      LogConfig      `yaml:"log" json:"log"`
	API      APIConfig      `yaml:"api" json:"api"`
	GPU      GPUConfig      `yaml:"gpu" json:"gpu"`
	Model    ModelConfig    `yaml:"model" json:"model"`
	Docker   DockerConfig   `yaml:"docker" json:"docker"`
	Sessions SessionsConfig `yaml:"sessions" json:"sessions"`
	Trace    TraceConfig    `yaml:"trace" json:"trace"`

	// Secrets come from the environment or from files named in the config,
	// never from the YAML itself, and are never serialised.
	Secrets Secrets `yaml:"-" json:"-"`
}

// LogConfig sets the daemon's logging.
type LogConfig struct {
	// Level is debug, info, warn or error; it can change on SIGHUP.
	Level string `yaml:"level" json:"level"`
	// Format is auto (JSON under systemd or without a terminal, console on
	// a terminal), json or console.
	Format string `yaml:"format" json:"format"`
}

// APIConfig sets where the API is served.
type APIConfig struct {
	// Socket is the unix socket path.
	Socket string `yaml:"socket" json:"socket"`
	// SocketMode is the socket's permission bits, octal text such as "0660".
	SocketMode string `yaml:"socket_mode" json:"socket_mode"`
	// SocketGroup, if set, owns the socket so its members can use sglangctl.
	SocketGroup string    `yaml:"socket_group" json:"socket_group"`
	TCP         TCPConfig `yaml:"tcp" json:"tcp"`
	// ShutdownTimeout bounds a graceful stop on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
}

// TCPConfig enables the optional TCP listener, which always requires a
// bearer token.
type TCPConfig struct {
	// Listen is host:port; empty disables TCP.
	Listen string `yaml:"listen" json:"listen"`
	// TokenFile holds the bearer token (SGLANGD_API_TOKEN overrides).
	TokenFile string `yaml:"token_file" json:"token_file"`
	// TLSCert and TLSKey enable TLS when both are set.
	TLSCert string `yaml:"tls_cert" json:"tls_cert"`
	TLSKey  string `yaml:"tls_key" json:"tls_key"`
}

// GPUConfig sets the NVML gate, allocation and telemetry.
type GPUConfig struct {
	// Mode is nvml (real GPUs) or none (no GPUs: the simulator demo).
	Mode string `yaml:"mode" json:"mode"`
	// LibraryPath overrides where libnvidia-ml.so.1 is loaded from.
	LibraryPath string `yaml:"library_path" json:"library_path"`
	// MinDriver is the lowest acceptable driver version, dotted text.
	MinDriver string `yaml:"min_driver" json:"min_driver"`
	// AllowForwardCompat accepts drivers below the image's CUDA minimum
	// (CUDA forward compatibility packages installed in the image).
	AllowForwardCompat bool `yaml:"allow_forward_compat" json:"allow_forward_compat"`
	// AllowForeignProcesses lets sessions use GPUs that run compute
	// processes not started by sglangd.
	AllowForeignProcesses bool `yaml:"allow_foreign_processes" json:"allow_foreign_processes"`
	// TelemetryInterval is the sampling period while a session profiles.
	TelemetryInterval Duration `yaml:"telemetry_interval" json:"telemetry_interval"`
}

// ModelConfig sets Hugging Face downloads.
type ModelConfig struct {
	// Endpoint is the Hub or a mirror (HF_ENDPOINT overrides).
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// TokenFile holds the HF token; HF_TOKEN overrides, $HF_HOME/token is
	// the fallback.
	TokenFile string `yaml:"token_file" json:"token_file"`
	// CacheDir is the HF hub cache (HF_HUB_CACHE overrides); default
	// <data_dir>/hf/hub.
	CacheDir string `yaml:"cache_dir" json:"cache_dir"`
	// Include and Exclude are glob patterns over repository paths.
	Include []string `yaml:"include" json:"include"`
	Exclude []string `yaml:"exclude" json:"exclude"`
	// PartSize is the ranged-request size for big files.
	PartSize ByteSize `yaml:"part_size" json:"part_size"`
	// ConnectionsPerFile caps parallel ranges per file.
	ConnectionsPerFile int `yaml:"connections_per_file" json:"connections_per_file"`
	// ConcurrentFiles caps files downloaded at once.
	ConcurrentFiles int `yaml:"concurrent_files" json:"concurrent_files"`
	// MaxConnections caps all connections of one pull.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`
	// StallTimeout aborts an attempt that received no byte for this long.
	StallTimeout Duration `yaml:"stall_timeout" json:"stall_timeout"`
	// Retries is the number of counted retries per part.
	Retries int `yaml:"retries" json:"retries"`
	// Fsync makes partial downloads durable at each checkpoint and every
	// blob before it is published. Off, a power cut can cost re-downloads
	// and leave a torn blob linked (verify finds it); hashes are still
	// checked before publishing.
	Fsync bool `yaml:"fsync" json:"fsync"`
}

// DockerConfig sets the engine, image and container flags.
type DockerConfig struct {
	// Host is the engine endpoint (DOCKER_HOST overrides); empty = default.
	Host string `yaml:"host" json:"host"`
	// Image is the SGLang image reference.
	Image string `yaml:"image" json:"image"`
	// PullPolicy is if-missing, always or never.
	PullPolicy string `yaml:"pull_policy" json:"pull_policy"`
	// NGCAPIKeyFile holds the nvcr.io key (NGC_API_KEY overrides).
	NGCAPIKeyFile string `yaml:"ngc_api_key_file" json:"ngc_api_key_file"`
	// UseDockerConfig falls back to ~/.docker/config.json and credential
	// helpers for registry credentials.
	UseDockerConfig bool `yaml:"use_docker_config" json:"use_docker_config"`
	// GPUDriver is nvidia (device requests) or cdi (CDI device names).
	GPUDriver string `yaml:"gpu_driver" json:"gpu_driver"`
	// IPCHost runs containers with --ipc=host.
	IPCHost bool `yaml:"ipc_host" json:"ipc_host"`
	// ShmSize is /dev/shm's size when IPCHost is false.
	ShmSize ByteSize `yaml:"shm_size" json:"shm_size"`
	// Ulimits by name (memlock, stack, nofile...); -1 means unlimited.
	Ulimits map[string]int64 `yaml:"ulimits" json:"ulimits"`
	// Network is bridge (port published on 127.0.0.1) or host.
	Network string `yaml:"network" json:"network"`
	// StopGrace is how long a container gets between SIGTERM and SIGKILL.
	StopGrace Duration `yaml:"stop_grace" json:"stop_grace"`
	// ReadyTimeout bounds the wait for /health after start (weights load).
	ReadyTimeout Duration `yaml:"ready_timeout" json:"ready_timeout"`
	// KeepWarm keeps a server running between sessions of the same spec.
	KeepWarm bool `yaml:"keep_warm" json:"keep_warm"`
}

// SessionsConfig sets profiling sessions.
type SessionsConfig struct {
	// Defaults fill fields a session spec leaves out.
	Defaults SessionDefaults `yaml:"defaults" json:"defaults"`
	// MaxConcurrent caps sessions running at once (GPUs are exclusive).
	MaxConcurrent int `yaml:"max_concurrent" json:"max_concurrent"`
}

// SessionDefaults are the manual recipe's values.
type SessionDefaults struct {
	Model       string  `yaml:"model" json:"model"`
	Revision    string  `yaml:"revision" json:"revision"`
	TPSize      int     `yaml:"tp_size" json:"tp_size"`
	DPSize      int     `yaml:"dp_size" json:"dp_size"`
	Port        int     `yaml:"port" json:"port"`
	NumRequests int     `yaml:"num_requests" json:"num_requests"`
	MaxTokens   int     `yaml:"max_tokens" json:"max_tokens"`
	Temperature float64 `yaml:"temperature" json:"temperature"`
	// NumSteps bounds the capture (0 = until the load ends and stop is
	// called); bounded captures keep traces from filling the disk.
	NumSteps int `yaml:"num_steps" json:"num_steps"`
	// StopTimeout bounds /stop_profile, which blocks while traces are
	// written (minutes at TP=4).
	StopTimeout Duration `yaml:"stop_timeout" json:"stop_timeout"`
}

// TraceConfig sets what happens to traces after a capture.
type TraceConfig struct {
	// Merge writes one merged trace per capture (sglangd merges offline,
	// never inside the serving process).
	Merge bool `yaml:"merge" json:"merge"`
	// Report writes report.html and summary.json per session.
	Report bool `yaml:"report" json:"report"`
	// KeepRankFiles keeps per-rank files beside the merged one (HTA reads
	// them).
	KeepRankFiles bool `yaml:"keep_rank_files" json:"keep_rank_files"`
}

// Secrets are read from the environment or secret files. String never
// prints their values.
type Secrets struct {
	APIToken  string
	HFToken   string
	NGCAPIKey string
}

// String reports which secrets are set, never their values.
func (s Secrets) String() string {
	return fmt.Sprintf("api_token=%s hf_token=%s ngc_api_key=%s", set(s.APIToken), set(s.HFToken), set(s.NGCAPIKey))
}

// GoString keeps %#v from printing secret values.
func (s Secrets) GoString() string { return "config.Secrets{" + s.String() + "}" }

func set(s string) string {
	if s == "" {
		return "<unset>"
	}
	return "<set>"
}

// Default returns the configuration used where the file says nothing.
func Default() Config {
	return Config{
		Version: CurrentVersion,
		DataDir: "/var/lib/sglangd",
		Log:     LogConfig{Level: "info", Format: "auto"},
		API: APIConfig{
			Socket:          "/run/sglangd/sglangd.sock",
			SocketMode:      "0660",
			ShutdownTimeout: Duration(30 * time.Second),
		},
		GPU: GPUConfig{
			Mode:              "nvml",
			MinDriver:         "570",
			TelemetryInterval: Duration(time.Second),
		},
		Model: ModelConfig{
			Endpoint: "https://huggingface.co",
			Include: []string{"*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken",
				"*.py", "*.jinja", "tokenizer*", "*.md"},
			Exclude:            []string{"*.pth", "*.bin", "*.pt", "*.msgpack", "*.h5", "*.onnx", "original/*", "*.gguf"},
			PartSize:           ByteSize(128 << 20),
			ConnectionsPerFile: 8,
			ConcurrentFiles:    4,
			MaxConnections:     16,
			StallTimeout:       Duration(30 * time.Second),
			Retries:            6,
			Fsync:              true,
		},
		Docker: DockerConfig{
			Image:           "nvcr.io/nvidia/sglang:26.01-py3",
			PullPolicy:      "if-missing",
			UseDockerConfig: true,
			GPUDriver:       "nvidia",
			IPCHost:         true,
			ShmSize:         ByteSize(32 << 30),
			Ulimits:         map[string]int64{"memlock": -1, "stack": 67108864},
			Network:         "bridge",
			StopGrace:       Duration(30 * time.Second),
			ReadyTimeout:    Duration(20 * time.Minute),
		},
		Sessions: SessionsConfig{
			Defaults: SessionDefaults{
				Model:       "Qwen/Qwen2.5-7B-Instruct",
				Revision:    "main",
				TPSize:      1,
				DPSize:      1,
				Port:        30000,
				NumRequests: 5,
				MaxTokens:   30,
				Temperature: 0.1,
				NumSteps:    0,
				StopTimeout: Duration(15 * time.Minute),
			},
			MaxConcurrent: 1,
		},
		Trace: TraceConfig{Merge: true, Report: true, KeepRankFiles: true},
	}
}
