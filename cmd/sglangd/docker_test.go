package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/config"
	"github.com/sglangd/sglangd/pkg/docker"
)

func TestDockerOptions(t *testing.T) {
	c := config.Default()
	c.Docker.Host = "unix:///run/docker.sock"
	c.Docker.GPUDriver, c.Docker.Network, c.Docker.KeepWarm = "cdi", "host", true
	c.Docker.StopGrace, c.Docker.ReadyTimeout = config.Duration(5*time.Second), config.Duration(time.Minute)
	c.Secrets.NGCAPIKey = "nvapi-x"
	o := dockerOptions(c, "daemon-id", zap.NewNop(), prometheus.NewRegistry())
	if o.Host != c.Docker.Host || o.Instance != "daemon-id" || o.GPUDriver != docker.GPUDriverCDI || o.Network != docker.NetworkHost ||
		!o.KeepWarm || o.StopGrace != 5*time.Second || o.ReadyTimeout != time.Minute || o.Registerer == nil {
		t.Errorf("dockerOptions = %+v", o)
	}
	if o.Credentials.NGCAPIKey != "nvapi-x" || !o.Credentials.UseDockerConfig {
		t.Errorf("credentials %s", o.Credentials)
	}
	d := dockerOptions(config.Default(), "", nil, nil)
	if !d.IPCHost || d.ShmSize != 32<<30 || d.Ulimits["memlock"] != -1 || d.Ulimits["stack"] != 67108864 || d.GPUDriver != docker.GPUDriverNVIDIA ||
		d.Network != docker.NetworkBridge {
		t.Errorf("defaults map to %+v; want the recipe's ipc=host, 32g shm, memlock=-1, stack=64MiB", d)
	}
	if _, err := docker.New(d); err != nil {
		t.Errorf("default options rejected: %v", err)
	}
}

func TestCheckRegistryCredentials(t *testing.T) {
	t.Setenv("DOCKER_AUTH_CONFIG", "")
	cfgDir := func(body string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	tests := []struct {
		name   string
		image  string
		key    string
		config string // DOCKER_CONFIG contents; "" = empty directory
		status api.CheckStatus
		msg    string
	}{
		{"ngc key", "nvcr.io/nvidia/sglang:26.01-py3", "nvapi-x", "", api.CheckOK, "NGC API key as user $oauthtoken"},
		{"docker login", "nvcr.io/nvidia/sglang:26.01-py3", "", `{"auths":{"nvcr.io":{"auth":"eDp5"}}}`, api.CheckOK, "auths entry nvcr.io"},
		{"nothing for nvcr.io", "nvcr.io/nvidia/sglang:26.01-py3", "", "", api.CheckWarn, "no NGC API key"},
		{"nothing for a public registry", "lmsysorg/sglang:latest", "", "", api.CheckOK, "anonymous"},
		{"helper missing", "nvcr.io/nvidia/sglang:26.01-py3", "", `{"credsStore":"sglangd-test-none"}`, api.CheckFail, "docker-credential-sglangd-test-none is not on"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", cfgDir(tt.config))
			c := config.Default()
			c.Docker.Image, c.Secrets.NGCAPIKey = tt.image, tt.key
			d := &daemon{cfg: c}
			res := d.checkRegistryCredentials(context.Background())
			if res.Status != tt.status || !strings.Contains(res.Message, tt.msg) {
				t.Errorf("check = %s %q, want %s ~%q", res.Status, res.Message, tt.status, tt.msg)
			}
			if tt.key != "" && strings.Contains(res.Message+res.Hint+strings.Join(mapValues(res.Details), " "), tt.key) {
				t.Error("the check leaks the key")
			}
		})
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// The docker check against this machine's engine, which has no NVIDIA
// runtime, and against an endpoint where no engine listens.
func TestCheckDocker(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err != nil && os.Getenv("DOCKER_HOST") == "" {
		t.Skip("no Docker engine")
	}
	tests := []struct {
		name    string
		host    string
		gpuMode string
		status  api.CheckStatus
		msg     string
		hint    string
	}{
		{"gpu mode none", "", "none", api.CheckOK, "gpu.mode none", ""},
		{"no nvidia runtime", "", "nvml", api.CheckWarn, "no nvidia runtime registered", "nvidia-ctk runtime configure"},
		{"engine unreachable", "unix://" + filepath.Join(t.TempDir(), "nothing.sock"), "none", api.CheckFail, "unreachable", "dockerd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.Docker.Host, c.GPU.Mode = tt.host, tt.gpuMode
			d := &daemon{cfg: c, log: zaptest.NewLogger(t)}
			m, err := docker.New(dockerOptions(c, "", d.log, nil))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			d.docker = m
			res := d.checkDocker(context.Background())
			if res.Status != tt.status || !strings.Contains(res.Message, tt.msg) || !strings.Contains(res.Hint, tt.hint) {
				t.Errorf("check = %s %q hint %q; want %s ~%q ~%q", res.Status, res.Message, res.Hint, tt.status, tt.msg, tt.hint)
			}
			if tt.status != api.CheckFail && res.Details["api_version"] == "" {
				t.Errorf("no negotiated API version: %v", res.Details)
			}
		})
	}
	if res := (&daemon{}).checkDocker(context.Background()); res.Status != api.CheckSkip {
		t.Errorf("before Docker connects: %+v", res)
	}
}
