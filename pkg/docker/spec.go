package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
)

// DefaultPort is SGLang's default --port.
const DefaultPort = 30000

// GPURequest says which GPUs the server gets. The zero value requests
// none (the simulator, CPU-only tests).
type GPURequest struct {
	// All requests every GPU (--gpus all).
	All bool `json:"all,omitempty"`
	// UUIDs requests exactly these GPUs (GPU-...), as the gpu package
	// allocated them.
	UUIDs []string `json:"uuids,omitempty"`
}

// None reports whether no GPU is requested.
func (g GPURequest) None() bool { return !g.All && len(g.UUIDs) == 0 }

// ServerSpec is one SGLang server container: the manual recipe's
// `docker run ... python3 -m sglang.launch_server ...` as data. Engine-wide
// flags (ipc, shm, ulimits, network, GPU driver) come from Options.
type ServerSpec struct {
	// SessionID labels the container and names it (NamePrefix+SessionID).
	SessionID string `json:"session_id"`
	// Image is the reference to run; it must be present (Pull first).
	Image string `json:"image"`
	// Model is --model-path: a path inside the container (below
	// ContainerHubCache when ModelCacheDir is set; see ContainerModelPath)
	// or a Hugging Face repo id.
	Model string `json:"model"`
	// ModelCacheDir is the host's Hugging Face hub cache, mounted read-only
	// at ContainerHubCache with HF_HUB_CACHE pointing at it and
	// HF_HUB_OFFLINE=1 (the weights are already there; Env may override).
	ModelCacheDir string `json:"model_cache_dir,omitempty"`
	// ProfileDir is the host directory for traces, mounted read-write at
	// ContainerProfileDir; SGLANG_TORCH_PROFILER_DIR points at it.
	ProfileDir string `json:"profile_dir,omitempty"`
	// TPSize and DPSize are --tp-size and --dp-size (default 1; --dp-size
	// is passed only above 1).
	TPSize int `json:"tp_size,omitempty"`
	DPSize int `json:"dp_size,omitempty"`
	// Port is --port inside the container (default 30000); with the host
	// network it is also the host port.
	Port int `json:"port,omitempty"`
	// HostPort is the port published on 127.0.0.1 with the bridge
	// network; 0 lets the engine pick a free one.
	HostPort int        `json:"host_port,omitempty"`
	GPUs     GPURequest `json:"gpus"`
	// Env adds variables (HF_ENDPOINT, SGLANG_PROFILE_WITH_STACK...).
	Env map[string]string `json:"env,omitempty"`
	// SecretEnv adds variables whose values are secrets (HF_TOKEN): they
	// reach the container but never logs, errors, labels or the spec hash.
	SecretEnv map[string]string `json:"-"`
	// ExtraArgs are appended to launch_server's command line.
	ExtraArgs []string `json:"extra_args,omitempty"`
	// LogPath is the host file the server's log is kept in (stdout and
	// stderr, demultiplexed, interleaved as written).
	LogPath string `json:"log_path,omitempty"`
	// Labels are added to the container's labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// Flags sglangd sets itself; ExtraArgs may not repeat them.
var managedFlags = []string{"--model-path", "--model", "--host", "--port", "--tp-size", "--tp", "--tensor-parallel-size", "--dp-size", "--dp", "--data-parallel-size"}

var (
	sessionIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	envNameRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (s ServerSpec) withDefaults() ServerSpec {
	c := s
	if c.TPSize == 0 {
		c.TPSize = 1
	}
	if c.DPSize == 0 {
		c.DPSize = 1
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	return c
}

// validate reports the first bad field, naming it and what was expected.
func (s *ServerSpec) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("server spec %s: %w: %s", field, errdefs.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	if !sessionIDRe.MatchString(s.SessionID) {
		return bad("session_id", "must be 1-128 characters of [A-Za-z0-9_.-], got %q", s.SessionID)
	}
	if _, err := NormalizeRef(s.Image); err != nil {
		return bad("image", "%v", err)
	}
	if strings.TrimSpace(s.Model) == "" {
		return bad("model", "must name the --model-path (a container path or a Hugging Face repo id)")
	}
	if s.TPSize < 1 || s.DPSize < 1 {
		return bad("tp_size/dp_size", "must be at least 1, got %d/%d", s.TPSize, s.DPSize)
	}
	if s.Port < 1 || s.Port > 65535 || s.HostPort < 0 || s.HostPort > 65535 {
		return bad("port/host_port", "must be 1..65535 (host_port 0 = any), got %d/%d", s.Port, s.HostPort)
	}
	if s.GPUs.All && len(s.GPUs.UUIDs) > 0 {
		return bad("gpus", "all and a UUID list exclude each other")
	}
	for _, u := range s.GPUs.UUIDs {
		if strings.TrimSpace(u) == "" || strings.Contains(u, ",") {
			return bad("gpus.uuids", "must be GPU UUIDs such as GPU-5a7c..., got %q", u)
		}
	}
	for field, dir := range map[string]string{"model_cache_dir": s.ModelCacheDir, "profile_dir": s.ProfileDir} {
		if dir == "" {
			continue
		}
		if !filepath.IsAbs(dir) {
			return bad(field, "must be an absolute host path, got %q", dir)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return bad(field, "must be an existing directory, got %q", dir)
		}
	}
	if s.LogPath != "" && !filepath.IsAbs(s.LogPath) {
		return bad("log_path", "must be an absolute host path, got %q", s.LogPath)
	}
	for _, a := range s.ExtraArgs {
		name, _, _ := strings.Cut(a, "=")
		if slices.Contains(managedFlags, name) {
			return bad("extra_args", "%s is set by sglangd from the spec; use the spec's field instead", name)
		}
	}
	for _, m := range []map[string]string{s.Env, s.SecretEnv} {
		for k := range m {
			if !envNameRe.MatchString(k) {
				return bad("env", "%q is not a valid variable name", k)
			}
			if (k == "SGLANG_TORCH_PROFILER_DIR" && s.ProfileDir != "") || (k == "HF_HUB_CACHE" && s.ModelCacheDir != "") {
				return bad("env", "%s is set by sglangd from the spec's directories", k)
			}
		}
	}
	for k := range s.Labels {
		if strings.HasPrefix(k, "io.sglangd.") {
			return bad("labels", "%s uses sglangd's own label prefix", k)
		}
	}
	return nil
}

// ContainerModelPath maps a host path below cacheDir (a snapshot directory
// of the hub cache) to its path in the container. The snapshot's files are
// relative symlinks into ../../blobs, so the whole cache is mounted, not
// the snapshot alone.
func ContainerModelPath(cacheDir, hostPath string) (string, error) {
	rel, err := filepath.Rel(cacheDir, hostPath)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", fmt.Errorf("model path %s: %w: not below the model cache %s", hostPath, errdefs.ErrInvalidArgument, cacheDir)
	}
	return filepath.ToSlash(filepath.Join(ContainerHubCache, rel)), nil
}

// Command returns the container command: exactly the recipe's
// `python3 -m sglang.launch_server --model-path M --host 0.0.0.0 --port P
// --tp-size N [--dp-size D] [extra...]`. The image's entrypoint (NGC's
// nvidia_entrypoint.sh) stays, as with `docker run IMAGE CMD`.
func (m *Manager) Command(spec ServerSpec) []string {
	s := spec.withDefaults()
	host := "0.0.0.0"
	if m.opts.Network == NetworkHost {
		host = "127.0.0.1"
	}
	cmd := []string{"python3", "-m", "sglang.launch_server",
		"--model-path", s.Model, "--host", host, "--port", strconv.Itoa(s.Port), "--tp-size", strconv.Itoa(s.TPSize)}
	if s.DPSize > 1 {
		cmd = append(cmd, "--dp-size", strconv.Itoa(s.DPSize))
	}
	return append(cmd, s.ExtraArgs...)
}

// env returns the container's environment, sorted, secrets last.
func (s *ServerSpec) env() []string {
	vars := map[string]string{}
	if s.ModelCacheDir != "" {
		vars["HF_HUB_CACHE"] = ContainerHubCache
		vars["HF_HUB_OFFLINE"] = "1"
	}
	for k, v := range s.Env {
		vars[k] = v
	}
	if s.ProfileDir != "" {
		vars["SGLANG_TORCH_PROFILER_DIR"] = ContainerProfileDir
	}
	out := make([]string, 0, len(vars)+len(s.SecretEnv))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	secret := make([]string, 0, len(s.SecretEnv))
	for k, v := range s.SecretEnv {
		secret = append(secret, k+"="+v)
	}
	slices.Sort(secret)
	return append(out, secret...)
}

// deviceRequests maps the GPU request onto the engine's, as --gpus does
// (driver nvidia, capability gpu) or as --device nvidia.com/gpu=... does
// for CDI.
func (m *Manager) deviceRequests(g GPURequest) []container.DeviceRequest {
	if g.None() {
		return nil
	}
	if m.opts.GPUDriver == GPUDriverCDI {
		ids := []string{"nvidia.com/gpu=all"}
		if !g.All {
			ids = ids[:0]
			for _, u := range g.UUIDs {
				ids = append(ids, "nvidia.com/gpu="+u)
			}
		}
		return []container.DeviceRequest{{Driver: "cdi", DeviceIDs: ids}}
	}
	r := container.DeviceRequest{Driver: "nvidia", Capabilities: [][]string{{"gpu"}}}
	if g.All {
		r.Count = -1
	} else {
		r.DeviceIDs = slices.Clone(g.UUIDs)
	}
	return []container.DeviceRequest{r}
}

// ulimits returns Options.Ulimits sorted by name, soft = hard.
func (m *Manager) ulimits() []*container.Ulimit {
	names := make([]string, 0, len(m.opts.Ulimits))
	for n := range m.opts.Ulimits {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]*container.Ulimit, 0, len(names))
	for _, n := range names {
		v := m.opts.Ulimits[n]
		out = append(out, &container.Ulimit{Name: n, Soft: v, Hard: v})
	}
	return out
}

// ContainerName is the stable name of a session's server container.
func (m *Manager) ContainerName(sessionID string) string { return m.opts.NamePrefix + sessionID }

// containerConfig builds the create request for spec (defaults applied).
func (m *Manager) containerConfig(s ServerSpec, ref, hash string) (*container.Config, *container.HostConfig) {
	port := network.MustParsePort(strconv.Itoa(s.Port) + "/tcp")
	grace := int(m.opts.StopGrace.Seconds())
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	labels[LabelManaged] = "true"
	labels[LabelSession] = s.SessionID
	labels[LabelSpecHash] = hash
	labels[LabelPort] = strconv.Itoa(s.Port)
	if m.opts.Instance != "" {
		labels[LabelInstance] = m.opts.Instance
	}
	if s.LogPath != "" {
		labels[LabelLogPath] = s.LogPath
	}
	cfg := &container.Config{
		Image:       ref,
		Cmd:         m.Command(s),
		Env:         s.env(),
		Labels:      labels,
		StopTimeout: &grace,
	}
	hc := &container.HostConfig{
		NetworkMode:   container.NetworkMode(m.opts.Network),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		ShmSize:       m.opts.ShmSize,
		Resources: container.Resources{
			DeviceRequests: m.deviceRequests(s.GPUs),
			Ulimits:        m.ulimits(),
		},
	}
	if m.opts.IPCHost {
		hc.IpcMode = container.IPCModeHost
	}
	if m.opts.Network == NetworkBridge {
		cfg.ExposedPorts = network.PortSet{port: {}}
		hostPort := ""
		if s.HostPort != 0 {
			hostPort = strconv.Itoa(s.HostPort)
		}
		hc.PortBindings = network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort}}}
	}
	if s.ModelCacheDir != "" {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: s.ModelCacheDir, Target: ContainerHubCache, ReadOnly: true})
	}
	if s.ProfileDir != "" {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: s.ProfileDir, Target: ContainerProfileDir})
	}
	return cfg, hc
}

// specHash identifies what a server is, for keep-warm reuse: the spec
// without its session, log file and secret values, plus the engine-wide
// flags.
func (m *Manager) specHash(s ServerSpec, ref string) string {
	secretNames := make([]string, 0, len(s.SecretEnv))
	for k := range s.SecretEnv {
		secretNames = append(secretNames, k)
	}
	slices.Sort(secretNames)
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(struct {
		Ref, Model, ModelCacheDir, ProfileDir string
		TP, DP, Port, HostPort                int
		GPUs                                  GPURequest
		Env                                   map[string]string
		SecretNames, Args                     []string
		Labels                                map[string]string
		Driver                                GPUDriver
		IPC                                   bool
		Shm                                   int64
		Ulimits                               map[string]int64
		Network                               Network
	}{ref, s.Model, s.ModelCacheDir, s.ProfileDir, s.TPSize, s.DPSize, s.Port, s.HostPort, s.GPUs, s.Env,
		secretNames, s.ExtraArgs, s.Labels, m.opts.GPUDriver, m.opts.IPCHost, m.opts.ShmSize, m.opts.Ulimits, m.opts.Network})
	return hex.EncodeToString(h.Sum(nil))[:16]
}
