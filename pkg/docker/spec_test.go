package docker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func unitManager(t *testing.T, o Options) *Manager {
	t.Helper()
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestServerSpec_Validate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ok := ServerSpec{SessionID: "s1", Image: "nvcr.io/nvidia/sglang:26.01-py3", Model: "/m"}
	tests := []struct {
		name  string
		edit  func(*ServerSpec)
		field string // "" = valid
	}{
		{"valid", func(*ServerSpec) {}, ""},
		{"valid with dirs and gpus", func(s *ServerSpec) {
			s.ModelCacheDir, s.ProfileDir, s.GPUs.UUIDs = dir, dir, []string{"GPU-1"}
		}, ""},
		{"session id with slash", func(s *ServerSpec) { s.SessionID = "a/b" }, "session_id"},
		{"empty session", func(s *ServerSpec) { s.SessionID = "" }, "session_id"},
		{"bad image", func(s *ServerSpec) { s.Image = "Not A Ref" }, "image"},
		{"no model", func(s *ServerSpec) { s.Model = " " }, "model"},
		{"tp 0 after defaults is fine, negative is not", func(s *ServerSpec) { s.TPSize = -1 }, "tp_size"},
		{"port too big", func(s *ServerSpec) { s.Port = 70000 }, "port"},
		{"all and uuids", func(s *ServerSpec) { s.GPUs = GPURequest{All: true, UUIDs: []string{"GPU-1"}} }, "gpus"},
		{"uuid list in one string", func(s *ServerSpec) { s.GPUs.UUIDs = []string{"GPU-1,GPU-2"} }, "gpus.uuids"},
		{"relative cache dir", func(s *ServerSpec) { s.ModelCacheDir = "hub" }, "model_cache_dir"},
		{"profile dir is a file", func(s *ServerSpec) { s.ProfileDir = file }, "profile_dir"},
		{"missing profile dir", func(s *ServerSpec) { s.ProfileDir = filepath.Join(dir, "nope") }, "profile_dir"},
		{"relative log", func(s *ServerSpec) { s.LogPath = "server.log" }, "log_path"},
		{"extra arg overrides port", func(s *ServerSpec) { s.ExtraArgs = []string{"--port=1"} }, "extra_args"},
		{"extra arg overrides tp", func(s *ServerSpec) { s.ExtraArgs = []string{"--tp", "2"} }, "extra_args"},
		{"env overrides profiler dir", func(s *ServerSpec) { s.ProfileDir = dir; s.Env = map[string]string{"SGLANG_TORCH_PROFILER_DIR": "/x"} }, "env"},
		{"bad env name", func(s *ServerSpec) { s.SecretEnv = map[string]string{"A-B": "x"} }, "env"},
		{"own label prefix", func(s *ServerSpec) { s.Labels = map[string]string{LabelSession: "x"} }, "labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.edit(&s)
			s = s.withDefaults()
			err := s.validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid spec rejected: %v", err)
				}
				return
			}
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "server spec "+tt.field) {
				t.Fatalf("error %v, want invalid argument naming %s", err, tt.field)
			}
		})
	}
}

func TestCommand(t *testing.T) {
	tests := []struct {
		name    string
		network Network
		spec    ServerSpec
		want    string
	}{
		{"defaults", NetworkBridge, ServerSpec{Model: "/m"},
			"python3 -m sglang.launch_server --model-path /m --host 0.0.0.0 --port 30000 --tp-size 1"},
		{"tp dp extra", NetworkBridge, ServerSpec{Model: "Qwen/Qwen2.5-7B-Instruct", TPSize: 4, DPSize: 2, Port: 31000, ExtraArgs: []string{"--enable-metrics"}},
			"python3 -m sglang.launch_server --model-path Qwen/Qwen2.5-7B-Instruct --host 0.0.0.0 --port 31000 --tp-size 4 --dp-size 2 --enable-metrics"},
		{"host network stays on loopback", NetworkHost, ServerSpec{Model: "/m"},
			"python3 -m sglang.launch_server --model-path /m --host 127.0.0.1 --port 30000 --tp-size 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := unitManager(t, Options{Network: tt.network})
			if got := strings.Join(m.Command(tt.spec), " "); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestContainerConfig_HostNetworkAndEnv(t *testing.T) {
	m := unitManager(t, Options{Network: NetworkHost, IPCHost: false, ShmSize: 1 << 30})
	s := ServerSpec{SessionID: "s", Image: "x:1", Model: "/m", Env: map[string]string{"HF_HUB_OFFLINE": "0", "B": "2"},
		SecretEnv: map[string]string{"HF_TOKEN": "t"}, ModelCacheDir: "/cache"}.withDefaults()
	cfg, hc := m.containerConfig(s, "docker.io/library/x:1", "h")
	if hc.NetworkMode != "host" || len(hc.PortBindings) != 0 || len(cfg.ExposedPorts) != 0 {
		t.Errorf("host network: mode %q bindings %v exposed %v", hc.NetworkMode, hc.PortBindings, cfg.ExposedPorts)
	}
	if hc.IpcMode != "" || hc.ShmSize != 1<<30 {
		t.Errorf("ipc %q shm %d, want private ipc with 1 GiB shm", hc.IpcMode, hc.ShmSize)
	}
	want := []string{"B=2", "HF_HUB_CACHE=" + ContainerHubCache, "HF_HUB_OFFLINE=0", "HF_TOKEN=t"}
	if !slices.Equal(cfg.Env, want) {
		t.Errorf("env %q, want %q (spec env overrides the offline default; secrets last)", cfg.Env, want)
	}
	if hc.DeviceRequests != nil {
		t.Errorf("no GPUs asked, got %v", hc.DeviceRequests)
	}
}

func TestSpecHash(t *testing.T) {
	m := unitManager(t, Options{})
	base := ServerSpec{SessionID: "a", Image: "x:1", Model: "/m", SecretEnv: map[string]string{"HF_TOKEN": "1"}, LogPath: "/l/a"}.withDefaults()
	h := m.specHash(base, "x:1")
	same := base
	same.SessionID, same.LogPath, same.SecretEnv = "b", "/l/b", map[string]string{"HF_TOKEN": "2"}
	if m.specHash(same, "x:1") != h {
		t.Error("session, log path or a secret's value changed the hash")
	}
	for name, edit := range map[string]func(*ServerSpec){
		"model":  func(s *ServerSpec) { s.Model = "/n" },
		"tp":     func(s *ServerSpec) { s.TPSize = 2 },
		"args":   func(s *ServerSpec) { s.ExtraArgs = []string{"--x"} },
		"env":    func(s *ServerSpec) { s.Env = map[string]string{"A": "1"} },
		"gpus":   func(s *ServerSpec) { s.GPUs.All = true },
		"secret": func(s *ServerSpec) { s.SecretEnv = map[string]string{"OTHER": "1"} },
	} {
		s := base
		edit(&s)
		if m.specHash(s, "x:1") == h {
			t.Errorf("changing %s kept the hash", name)
		}
	}
	if m.specHash(base, "x:2") == h {
		t.Error("another image kept the hash")
	}
}

func TestContainerModelPath(t *testing.T) {
	got, err := ContainerModelPath("/var/lib/sglangd/hf/hub", "/var/lib/sglangd/hf/hub/models--Qwen--Q/snapshots/abc")
	if err != nil || got != ContainerHubCache+"/models--Qwen--Q/snapshots/abc" {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := ContainerModelPath("/var/lib/sglangd/hf/hub", "/etc/passwd"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("path outside the cache: %v", err)
	}
}

func TestNew_RejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"driver":  {GPUDriver: "amd"},
		"network": {Network: "macvlan"},
		"ulimit":  {Ulimits: map[string]int64{"memlock": -2}},
		"host":    {Host: "no-scheme"},
	} {
		if _, err := New(o); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
}

func TestLineRing(t *testing.T) {
	r := newLineRing(3)
	for _, chunk := range []string{"one\ntw", "o\nthree\r\n", "four\nfi"} {
		_, _ = r.Write([]byte(chunk))
	}
	if got := r.last(10); !slices.Equal(got, []string{"two", "three", "four", "fi"}) {
		t.Errorf("last = %q", got)
	}
	if got := r.last(2); !slices.Equal(got, []string{"four", "fi"}) {
		t.Errorf("last(2) = %q, want the last line and the unterminated one", got)
	}
	long := strings.Repeat("x", 3*maxLine)
	_, _ = r.Write([]byte(long + "\n"))
	if got := r.last(1); len(got[0]) != maxLine {
		t.Errorf("a long line kept %d bytes, want %d", len(got[0]), maxLine)
	}
}

func TestEngineUnreachable(t *testing.T) {
	m := unitManager(t, Options{Host: "unix://" + filepath.Join(t.TempDir(), "no.sock")})
	for name, err := range map[string]error{
		"pull": func() error {
			_, err := m.Pull(context.Background(), "nvcr.io/nvidia/sglang:26.01-py3", PullIfMissing, nil)
			return err
		}(),
		"info": func() error { _, err := m.Info(context.Background()); return err }(),
		"reconcile": func() error {
			_, err := m.Reconcile(context.Background(), nil)
			return err
		}(),
	} {
		if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(HintOf(err), "dockerd") {
			t.Errorf("%s: %v (hint %q), want unavailable with a hint", name, err, HintOf(err))
		}
	}
}

func TestRedactArgs(t *testing.T) {
	got := redactArgs([]string{"python3", "--model-path", "/m", "--api-key", "sk-1", "--admin-api-key=sk-2", "--enable-metrics", "--hf-token", "--x"})
	want := []string{"python3", "--model-path", "/m", "--api-key", "<redacted>", "--admin-api-key=<redacted>", "--enable-metrics", "--hf-token", "--x"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
