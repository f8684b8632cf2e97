// Package docker turns the manual recipe's `docker pull` and `docker run`
// lines into a managed, recoverable life cycle for SGLang server containers.
//
// A Manager talks to one Docker engine through github.com/moby/moby/client,
// negotiating the API version (engines from API 1.40 up; 20.10 speaks 1.41).
// It
//
//   - pulls images with credentials (an NGC API key as user $oauthtoken, or
//     the Docker client config and its credential helpers), honouring a pull
//     policy, reporting per-layer progress and returning the resolved digest
//     and the labels a session records (CUDA and SGLang versions);
//   - runs a server container from a ServerSpec with exactly the recipe's
//     flags (GPU device requests, --ipc=host, ulimits, shm size, read-only
//     model mount, per-session profile directory, port on 127.0.0.1), keeps
//     its demultiplexed log as a file, and waits for /health while watching
//     the container, failing at once with the exit code and log tail if it
//     dies;
//   - stops and removes containers with a grace period, optionally keeps one
//     warm server for the next session with the same spec, and on daemon
//     start reconciles leftovers by label: adopted when their session is
//     still active, otherwise stopped and removed.
//
// Every container it creates carries the labels in this file; nothing else
// on the engine is touched. Errors are classified with containerd/errdefs
// and carry a hint for the user (see HintOf).
package docker

import (
	"github.com/sglangd/sglangd/internal/hint"

	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Labels put on every container the Manager creates. LabelManaged marks
// the container as sglangd's; the others let a restarted daemon know what
// the container is for without any state of its own.
const (
	LabelManaged  = "io.sglangd.managed"
	LabelInstance = "io.sglangd.instance"
	LabelSession  = "io.sglangd.session"
	LabelSpecHash = "io.sglangd.spec-hash"
	LabelLogPath  = "io.sglangd.log-path"
	LabelPort     = "io.sglangd.port"
)

// Paths inside the server container.
const (
	// ContainerHubCache is where the host's Hugging Face hub cache is
	// mounted read-only; HF_HUB_CACHE points at it.
	ContainerHubCache = "/sglangd/hf/hub"
	// ContainerProfileDir is where the session's profile directory is
	// mounted; SGLANG_TORCH_PROFILER_DIR points at it.
	ContainerProfileDir = "/sglangd/profile"
)

// GPUDriver selects how GPUs are requested from the engine.
type GPUDriver string

// GPU drivers.
const (
	// GPUDriverNVIDIA requests GPUs from the nvidia device driver (the
	// NVIDIA Container Toolkit's hook, or CDI on engine 29+), like --gpus.
	GPUDriverNVIDIA GPUDriver = "nvidia"
	// GPUDriverCDI requests CDI devices nvidia.com/gpu=<uuid|all>, like
	// --device nvidia.com/gpu=all (engine 28.2+, or 25+ with features.cdi).
	GPUDriverCDI GPUDriver = "cdi"
)

// Network selects how the server's port reaches the host.
type Network string

// Networks.
const (
	// NetworkBridge publishes the port on 127.0.0.1 only.
	NetworkBridge Network = "bridge"
	// NetworkHost runs the server in the host's network namespace; it then
	// listens on 127.0.0.1 rather than 0.0.0.0 to stay off the host's
	// public interfaces.
	NetworkHost Network = "host"
)

// Options configure a Manager. cmd/sglangd fills them from the docker
// section of the config file.
type Options struct {
	// Host is the engine endpoint (unix:///var/run/docker.sock,
	// tcp://host:2376...). Empty means DOCKER_HOST, then the default socket.
	// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH are honoured either way.
	Host string
	// Instance names this daemon (its data directory's id). Reconcile only
	// touches containers labelled with it, so two daemons, or parallel
	// tests, sharing one engine leave each other alone. Empty matches any
	// sglangd container.
	Instance string
	// NamePrefix starts every container name; default "sglangd-".
	NamePrefix string

	Credentials Credentials

	GPUDriver GPUDriver
	// IPCHost runs containers with --ipc=host.
	IPCHost bool
	// ShmSize is /dev/shm's size in bytes (--shm-size); 0 keeps Docker's.
	ShmSize int64
	// Ulimits by name, soft = hard; -1 is unlimited. The recipe sets
	// memlock=-1 and stack=67108864; engines without CAP_SYS_RESOURCE
	// refuse memlock, so it is configurable.
	Ulimits map[string]int64
	Network Network
	// StopGrace is the time between SIGTERM and SIGKILL; default 30s.
	StopGrace time.Duration
	// ReadyTimeout bounds WaitReady; default 20m (weights load slowly).
	ReadyTimeout time.Duration
	// KeepWarm keeps one idle server after Release for a later session
	// with the same spec.
	KeepWarm bool
	// LogTailLines is how many log lines errors quote; default 40.
	LogTailLines int

	Logger *zap.Logger
	// Registerer receives the package's metrics; nil registers none.
	Registerer prometheus.Registerer
	// HTTPClient probes /health; default a client with a 5s timeout.
	HTTPClient *http.Client
}

// Manager owns the engine client, pulls, and the servers it runs or
// adopted. It is safe for concurrent use.
type Manager struct {
	opts    Options
	cli     *client.Client
	log     *zap.Logger
	metrics *metrics
	hc      *http.Client

	// base outlives requests: pulls and log followers run under it, so a
	// client disconnect never cancels them; Close cancels it.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pulls   map[string]*pullOp
	servers map[string]*Server // by container ID
}

// New connects a Manager to the engine. It does not contact the engine;
// the first call negotiates the API version.
func New(opts Options) (*Manager, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = "sglangd-"
	}
	if opts.GPUDriver == "" {
		opts.GPUDriver = GPUDriverNVIDIA
	}
	if opts.Network == "" {
		opts.Network = NetworkBridge
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 30 * time.Second
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 20 * time.Minute
	}
	if opts.LogTailLines <= 0 {
		opts.LogTailLines = 40
	}
	switch opts.GPUDriver {
	case GPUDriverNVIDIA, GPUDriverCDI:
	default:
		return nil, fmt.Errorf("docker gpu driver %q: %w: expected nvidia or cdi", opts.GPUDriver, errdefs.ErrInvalidArgument)
	}
	switch opts.Network {
	case NetworkBridge, NetworkHost:
	default:
		return nil, fmt.Errorf("docker network %q: %w: expected bridge or host", opts.Network, errdefs.ErrInvalidArgument)
	}
	for name, v := range opts.Ulimits {
		if v < -1 {
			return nil, fmt.Errorf("docker ulimit %s=%d: %w: expected -1 (unlimited) or a non-negative number", name, v, errdefs.ErrInvalidArgument)
		}
	}
	copts := []client.Opt{client.FromEnv}
	if opts.Host != "" {
		copts = append(copts, client.WithHost(opts.Host))
	}
	cli, err := client.New(copts...)
	if err != nil {
		return nil, fmt.Errorf("docker host %q: %w: %v", opts.Host, errdefs.ErrInvalidArgument, err)
	}
	m := &Manager{
		opts:    opts,
		cli:     cli,
		log:     opts.Logger.Named("docker"),
		hc:      opts.HTTPClient,
		pulls:   map[string]*pullOp{},
		servers: map[string]*Server{},
	}
	if m.hc == nil {
		m.hc = &http.Client{Timeout: 5 * time.Second}
	}
	m.metrics, err = newMetrics(opts.Registerer)
	if err != nil {
		cli.Close()
		return nil, err
	}
	m.base, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Close stops background work (log followers, detached pulls) and closes
// the engine connection. Running containers keep running: a restarted
// daemon adopts or removes them in Reconcile.
func (m *Manager) Close() error {
	m.cancel()
	m.wg.Wait()
	return m.cli.Close()
}

// Client exposes the engine client for callers that need a call this
// package does not wrap (tests inspecting what was created).
func (m *Manager) Client() *client.Client { return m.cli }

// EngineInfo describes the engine for doctor checks and the logs.
type EngineInfo struct {
	// Host is the endpoint the client talks to.
	Host string `json:"host"`
	// Version is the engine's version, e.g. 20.10.24.
	Version string `json:"version"`
	// APIVersion is the version negotiated for this client.
	APIVersion string `json:"api_version"`
	// EngineAPIVersion and MinAPIVersion are the engine's range.
	EngineAPIVersion string `json:"engine_api_version"`
	MinAPIVersion    string `json:"min_api_version"`
	OS               string `json:"os"`
	Arch             string `json:"arch"`
	KernelVersion    string `json:"kernel_version"`
	StorageDriver    string `json:"storage_driver"`
	LoggingDriver    string `json:"logging_driver"`
	// Runtimes are the OCI runtimes registered with the engine; "nvidia"
	// appears after `nvidia-ctk runtime configure --runtime=docker`.
	Runtimes       []string `json:"runtimes"`
	DefaultRuntime string   `json:"default_runtime"`
	// CDISpecDirs is non-empty when the engine has CDI enabled (API 1.47+).
	CDISpecDirs []string `json:"cdi_spec_dirs,omitempty"`
	Rootless    bool     `json:"rootless"`
}

// NVIDIARuntime reports whether the NVIDIA runtime is registered. The nvidia
// device driver itself (used by --gpus) registers when
// nvidia-container-runtime-hook is on dockerd's PATH, which the API does
// not show; a registered runtime is the visible sign the toolkit is set up.
func (e EngineInfo) NVIDIARuntime() bool { return slices.Contains(e.Runtimes, "nvidia") }

// Info pings the engine and describes it. An unreachable engine is an
// ErrUnavailable error with a hint.
func (m *Manager) Info(ctx context.Context) (*EngineInfo, error) {
	v, err := m.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return nil, m.engineError("version", err)
	}
	info, err := m.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, m.engineError("info", err)
	}
	in := info.Info
	e := &EngineInfo{
		Host: m.cli.DaemonHost(), Version: v.Version, APIVersion: m.cli.ClientVersion(),
		EngineAPIVersion: v.APIVersion, MinAPIVersion: v.MinAPIVersion, OS: v.Os, Arch: v.Arch,
		KernelVersion: in.KernelVersion, StorageDriver: in.Driver, LoggingDriver: in.LoggingDriver,
		DefaultRuntime: in.DefaultRuntime, CDISpecDirs: in.CDISpecDirs,
	}
	for name := range in.Runtimes {
		e.Runtimes = append(e.Runtimes, name)
	}
	slices.Sort(e.Runtimes)
	for _, o := range in.SecurityOptions {
		if strings.Contains(o, "name=rootless") {
			e.Rootless = true
		}
	}
	return e, nil
}

// engineError classifies a failed engine call: an engine that cannot be
// reached is unavailable, with a hint on what to check.
func (m *Manager) engineError(op string, err error) error {
	if client.IsErrConnectionFailed(err) || errors.Is(err, errdefs.ErrUnavailable) {
		return hint.With(fmt.Errorf("docker %s: engine at %s unreachable: %w: %v", op, m.cli.DaemonHost(), errdefs.ErrUnavailable, err),
			"is dockerd running (systemctl status docker)? is docker.host / DOCKER_HOST right, and may the sglangd user use the socket (docker group)?")
	}
	return fmt.Errorf("docker %s: %w", op, err)
}
