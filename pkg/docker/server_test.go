package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/sglangd/sglangd/internal/testutil/registrytest"
)

// TestStart_GPURecipe creates the recipe's container with GPU requests on
// this GPU-less engine, checks what the engine stored against the manual
// recipe's flags, then checks that starting it fails with the documented
// error, reported clearly, and leaves nothing behind.
func TestStart_GPURecipe(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{})
	uuids := []string{"GPU-5a7c3e2b-0000-4000-8000-000000000001", "GPU-5a7c3e2b-0000-4000-8000-000000000002"}
	tests := []struct {
		name      string
		driver    GPUDriver
		gpus      GPURequest
		want      []container.DeviceRequest
		wantStart string
	}{
		{name: "nvidia all", driver: GPUDriverNVIDIA, gpus: GPURequest{All: true},
			want:      []container.DeviceRequest{{Driver: "nvidia", Count: -1, Capabilities: [][]string{{"gpu"}}}},
			wantStart: `could not select device driver "nvidia" with capabilities: [[gpu]]`},
		{name: "nvidia uuids", driver: GPUDriverNVIDIA, gpus: GPURequest{UUIDs: uuids},
			want:      []container.DeviceRequest{{Driver: "nvidia", DeviceIDs: uuids, Capabilities: [][]string{{"gpu"}}}},
			wantStart: `could not select device driver "nvidia" with capabilities: [[gpu]]`},
		{name: "cdi uuids", driver: GPUDriverCDI, gpus: GPURequest{UUIDs: uuids},
			want:      []container.DeviceRequest{{Driver: "cdi", DeviceIDs: []string{"nvidia.com/gpu=" + uuids[0], "nvidia.com/gpu=" + uuids[1]}}},
			wantStart: `could not select device driver "cdi" with capabilities: []`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := testOptions(t)
			opts.Credentials = dockerConfigCreds(t, r)
			opts.GPUDriver = tt.driver
			// The recipe's values; this test never runs the container, so
			// memlock=-1 is back.
			opts.Ulimits = map[string]int64{"memlock": -1, "stack": 67108864}
			opts.ShmSize = 32 << 30
			m := newManager(t, opts)
			pullSim(t, m, r)
			ctx := context.Background()
			cache, profile := t.TempDir(), t.TempDir()
			spec := ServerSpec{
				SessionID: "s-" + randHex(4), Image: r.ref, Model: ContainerHubCache + "/models--Qwen--Qwen2.5-7B-Instruct/snapshots/abc",
				ModelCacheDir: cache, ProfileDir: profile, TPSize: 2, GPUs: tt.gpus,
				Env:       map[string]string{"SGLANG_PROFILE_WITH_STACK": "false"},
				SecretEnv: map[string]string{"HF_TOKEN": "hf_secret"},
				ExtraArgs: []string{"--disable-cuda-graph", "--mem-fraction-static", "0.8"},
				LogPath:   filepath.Join(t.TempDir(), "server.log"),
			}
			s := spec.withDefaults()
			if err := s.validate(); err != nil {
				t.Fatal(err)
			}
			ref := mustNormalize(t, r.ref)
			cfg, hc := m.containerConfig(s, ref, m.specHash(s, ref))
			id, err := m.create(ctx, m.ContainerName(s.SessionID), s.SessionID, cfg, hc)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			ins, err := m.Client().ContainerInspect(ctx, id, client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got := ins.Container
			if !reflect.DeepEqual(got.HostConfig.DeviceRequests, tt.want) {
				t.Errorf("DeviceRequests = %+v, want %+v", got.HostConfig.DeviceRequests, tt.want)
			}
			if got.HostConfig.IpcMode != "host" || got.HostConfig.ShmSize != 32<<30 {
				t.Errorf("IpcMode %q ShmSize %d, want host / 32 GiB", got.HostConfig.IpcMode, got.HostConfig.ShmSize)
			}
			wantUlimits := []*container.Ulimit{{Name: "memlock", Soft: -1, Hard: -1}, {Name: "stack", Soft: 67108864, Hard: 67108864}}
			if !reflect.DeepEqual(got.HostConfig.Ulimits, wantUlimits) {
				t.Errorf("Ulimits = %v, want memlock=-1:-1 stack=67108864", got.HostConfig.Ulimits)
			}
			wantMounts := []mount.Mount{
				{Type: mount.TypeBind, Source: cache, Target: ContainerHubCache, ReadOnly: true},
				{Type: mount.TypeBind, Source: profile, Target: ContainerProfileDir},
			}
			if !reflect.DeepEqual(got.HostConfig.Mounts, wantMounts) {
				t.Errorf("Mounts = %+v, want %+v", got.HostConfig.Mounts, wantMounts)
			}
			for _, mp := range got.Mounts {
				if (mp.Destination == ContainerHubCache) == mp.RW {
					t.Errorf("mount %s RW=%v: the model must be read-only, the profile dir writable", mp.Destination, mp.RW)
				}
			}
			wantCmd := []string{"python3", "-m", "sglang.launch_server", "--model-path", spec.Model,
				"--host", "0.0.0.0", "--port", "30000", "--tp-size", "2", "--disable-cuda-graph", "--mem-fraction-static", "0.8"}
			if !slices.Equal(got.Config.Cmd, wantCmd) {
				t.Errorf("Cmd = %q\nwant  %q", got.Config.Cmd, wantCmd)
			}
			for _, kv := range []string{"SGLANG_TORCH_PROFILER_DIR=" + ContainerProfileDir, "HF_HUB_CACHE=" + ContainerHubCache,
				"HF_HUB_OFFLINE=1", "SGLANG_PROFILE_WITH_STACK=false", "HF_TOKEN=hf_secret"} {
				if !slices.Contains(got.Config.Env, kv) {
					t.Errorf("Env %q lacks %s", got.Config.Env, kv)
				}
			}
			bind := got.HostConfig.PortBindings[mustPort(t, "30000/tcp")]
			if len(bind) != 1 || bind[0].HostIP.String() != "127.0.0.1" {
				t.Errorf("port bindings %+v, want 30000/tcp on 127.0.0.1", got.HostConfig.PortBindings)
			}
			l := got.Config.Labels
			if l[LabelManaged] != "true" || l[LabelSession] != s.SessionID || l[LabelInstance] != opts.Instance || l[LabelLogPath] != spec.LogPath {
				t.Errorf("labels %v", l)
			}
			for k, v := range l {
				if strings.Contains(v, "hf_secret") {
					t.Errorf("label %s leaks the secret", k)
				}
			}
			if got.Name != "/"+opts.NamePrefix+s.SessionID {
				t.Errorf("name %q, want the stable %s%s", got.Name, opts.NamePrefix, s.SessionID)
			}

			// Start (through Start, which replaces the leftover created
			// above): the documented error, classified, with a hint.
			_, err = m.Start(ctx, spec)
			if err == nil {
				t.Fatal("Start succeeded on an engine without the NVIDIA runtime")
			}
			if !strings.Contains(err.Error(), tt.wantStart) {
				t.Errorf("Start error %q does not carry the engine's %q", err, tt.wantStart)
			}
			if !errdefs.IsFailedPrecondition(err) || !strings.Contains(HintOf(err), "nvidia-ctk") {
				t.Errorf("Start error %v: want failed precondition with a toolkit hint, hint %q", err, HintOf(err))
			}
			if left := instanceContainers(t, m.Client(), opts.Instance); len(left) != 0 {
				t.Errorf("containers left after the failed start: %v", left)
			}
		})
	}
}

func TestStart_MemlockRefusedIsExplained(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{})
	opts := testOptions(t)
	opts.Credentials = dockerConfigCreds(t, r)
	opts.Ulimits = map[string]int64{"memlock": -1, "stack": 67108864}
	m := newManager(t, opts)
	pullSim(t, m, r)
	srv, err := m.Start(context.Background(), ServerSpec{SessionID: "memlock", Image: r.ref, Model: "/m"})
	if err == nil {
		// An engine with CAP_SYS_RESOURCE runs it: nothing to explain.
		t.Logf("this engine accepts memlock=-1")
		_ = m.Stop(context.Background(), srv)
		return
	}
	if !strings.Contains(err.Error(), "rlimit") || !strings.Contains(HintOf(err), "docker.ulimits.memlock") {
		t.Errorf("error %q hint %q: want the rlimit failure and the config key to change", err, HintOf(err))
	}
}

func mustPort(t *testing.T, s string) network.Port {
	t.Helper()
	p, err := network.ParsePort(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serverInfo is the part of SGLang's /server_info (its ServerArgs) the
// tests check.
type serverInfo struct {
	ModelPath     string `json:"model_path"`
	Host          string `json:"host"`
	Port          int    `json:"port"`
	EnableMetrics bool   `json:"enable_metrics"`
}

// post sends a JSON POST to the server and fails the test unless it
// answers 200.
func post(t *testing.T, url, body string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s %s", url, resp.Status, b)
	}
}

func TestRun_ReadyCallStop(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{})
	opts := testOptions(t)
	opts.Credentials = dockerConfigCreds(t, r)
	m := newManager(t, opts)
	pullSim(t, m, r)
	ctx := context.Background()
	logPath := filepath.Join(t.TempDir(), "logs", "server.log")
	profile := t.TempDir()
	srv, err := m.Run(ctx, ServerSpec{
		SessionID: "ready-" + randHex(3), Image: r.ref, Model: "Qwen/Qwen2.5-7B-Instruct", ProfileDir: profile,
		// Loading takes a while: the wait sees connections dropped first.
		Env:     map[string]string{"SGLANG_SIM_LOAD_TIME": "300ms"},
		LogPath: logPath, ExtraArgs: []string{"--enable-metrics"},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, ok := m.Get(srv.SessionID()); !ok || got != srv {
		t.Errorf("Get(%s) = %v, %v", srv.SessionID(), got, ok)
	}
	// Called from the host, through the port published on 127.0.0.1.
	resp, err := http.Get(srv.URL + "/server_info")
	if err != nil {
		t.Fatalf("GET /server_info: %v", err)
	}
	var info serverInfo
	err = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := (serverInfo{ModelPath: "Qwen/Qwen2.5-7B-Instruct", Host: "0.0.0.0", Port: 30000, EnableMetrics: true}); info != want {
		t.Errorf("server runs with %+v, want %+v", info, want)
	}
	// SGLANG_TORCH_PROFILER_DIR and the profile mount reach SGLang: a
	// profiled request leaves its trace in the session's directory.
	post(t, srv.URL+"/start_profile", "")
	post(t, srv.URL+"/generate", `{"text":"Hello","sampling_params":{"max_new_tokens":4}}`)
	post(t, srv.URL+"/stop_profile", "")
	if traces, _ := filepath.Glob(filepath.Join(profile, "*-TP-0.trace.json.gz")); len(traces) != 1 {
		t.Errorf("traces in the profile dir: %v, want one", traces)
	}
	if _, err := os.Stat(logPath + partialSuffix); err != nil {
		t.Errorf("no live log at %s.partial: %v", logPath, err)
	}

	if err := m.Stop(ctx, srv); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if code, exited := srv.ExitCode(); !exited || code != 0 {
		t.Errorf("exit = %d, %v; want 0 after SIGTERM", code, exited)
	}
	if _, err := m.Client().ContainerInspect(ctx, srv.ID, client.ContainerInspectOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("container still there after Stop: %v", err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("server log: %v", err)
	}
	// stdout (the NGC entrypoint's banner) and stderr (SGLang's logging).
	for _, want := range []string{"== SGLang ==", "The server is fired up and ready to roll!", "Shutting down"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("server log lacks %q:\n%s", want, b)
		}
	}
	if strings.ContainsRune(string(b), 0) || strings.Contains(string(b), "\x01\x00\x00\x00") {
		t.Errorf("log still has stream headers (not demultiplexed)")
	}
	if _, err := os.Stat(logPath + partialSuffix); !os.IsNotExist(err) {
		t.Errorf("partial log left behind: %v", err)
	}
	if _, ok := m.Get(srv.SessionID()); ok {
		t.Errorf("stopped server still tracked")
	}
}

// TestRun_ExitDuringStartup covers both ways SGLang dies before it is
// ready: at once (argparse, before the port is even published) and while
// sglangd polls /health (a CUDA OOM while loading).
func TestRun_ExitDuringStartup(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{})
	tests := []struct {
		name  string
		env   map[string]string
		extra []string
		code  int
		want  []string
	}{
		{name: "bad extra argument", env: map[string]string{"SGLANG_SIM_STRICT_ARGS": "true"}, extra: []string{"--no-such-flag"},
			code: 2, want: []string{"launch_server.py: error: unrecognized arguments: --no-such-flag"}},
		// SGLang's kill_process_tree cannot SIGKILL a container's PID 1,
		// which then exits 0: still a failure.
		{name: "CUDA OOM while loading", env: map[string]string{"SGLANG_SIM_LOAD_TIME": "300ms", "SGLANG_SIM_CRASH_EXIT_CODE": "0",
			"SGLANG_SIM_LOAD_ERROR": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"},
			code: 0, want: []string{"Scheduler hit an exception", "torch.OutOfMemoryError: CUDA out of memory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := testOptions(t)
			opts.Credentials = dockerConfigCreds(t, r)
			opts.ReadyTimeout = time.Minute // the exit must end the wait, not the deadline
			m := newManager(t, opts)
			pullSim(t, m, r)
			logPath := filepath.Join(t.TempDir(), "server.log")
			start := time.Now()
			_, err := m.Run(context.Background(), ServerSpec{
				SessionID: "dies", Image: r.ref, Model: "/m", LogPath: logPath, Env: tt.env, ExtraArgs: tt.extra})
			var ee *ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("Run error %v (%T), want *ExitError", err, err)
			}
			if ee.ExitCode != tt.code || !errdefs.IsFailedPrecondition(err) {
				t.Errorf("exit code %d class failed-precondition=%v, want %d/true", ee.ExitCode, errdefs.IsFailedPrecondition(err), tt.code)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("exited with code %d", tt.code)) {
				t.Errorf("error lacks the exit code:\n%v", err)
			}
			b, rerr := os.ReadFile(logPath)
			if rerr != nil {
				t.Errorf("log file: %v", rerr)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) || !strings.Contains(string(b), w) {
					t.Errorf("error or log file lacks %q:\n%v\nlog:\n%s", w, err, b)
				}
			}
			if !strings.Contains(HintOf(err), logPath) {
				t.Errorf("hint %q does not point at the log", HintOf(err))
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %s: the exit should end the wait at once", d)
			}
			if left := instanceContainers(t, m.Client(), opts.Instance); len(left) != 0 {
				t.Errorf("containers left: %v", left)
			}
		})
	}
}

func TestRun_ReadyTimeoutQuotesTheLog(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{})
	opts := testOptions(t)
	opts.Credentials = dockerConfigCreds(t, r)
	// Long enough for the container to print its first lines on a loaded
	// machine; the warm-up never ends.
	opts.ReadyTimeout = 5 * time.Second
	opts.StopGrace = time.Second
	m := newManager(t, opts)
	pullSim(t, m, r)
	// An hour per batch: the warm-up request hangs as on an NCCL deadlock,
	// with the HTTP server up and /health answering 503.
	_, err := m.Run(context.Background(), ServerSpec{SessionID: "slow", Image: r.ref, Model: "/m",
		Env: map[string]string{"SGLANG_SIM_DECODE_STEP_TIME": "1h"}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not ready after 5s (last /health: 503") ||
		!strings.Contains(err.Error(), "server_args=") {
		t.Fatalf("error %v: want a deadline error naming the last /health status and the log tail", err)
	}
	if !strings.Contains(HintOf(err), "docker.ready_timeout") {
		t.Errorf("hint %q does not name docker.ready_timeout", HintOf(err))
	}
	if left := instanceContainers(t, m.Client(), opts.Instance); len(left) != 0 {
		t.Errorf("containers left: %v", left)
	}
}

// TestStop_KillsAfterGrace stops a server that ignores SIGTERM, as one
// whose scheduler hangs does: the engine kills it when the grace period
// ends, and its log is still saved.
func TestStop_KillsAfterGrace(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{})
	opts := testOptions(t)
	opts.Credentials = dockerConfigCreds(t, r)
	opts.StopGrace = time.Second
	m := newManager(t, opts)
	pullSim(t, m, r)
	ctx := context.Background()
	logPath := filepath.Join(t.TempDir(), "server.log")
	srv, err := m.Run(ctx, ServerSpec{SessionID: "hung", Image: r.ref, Model: "/m", LogPath: logPath,
		Env: map[string]string{"SGLANG_SIM_IGNORE_SIGTERM": "true"}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := m.Stop(ctx, srv); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if code, exited := srv.ExitCode(); !exited || code != 137 {
		t.Errorf("exit = %d, %v; want 137 (SIGKILL after the grace period)", code, exited)
	}
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), "Received SIGTERM; ignored") {
		t.Errorf("log: %v\n%s", err, b)
	}
	if left := instanceContainers(t, m.Client(), opts.Instance); len(left) != 0 {
		t.Errorf("containers left: %v", left)
	}
}
