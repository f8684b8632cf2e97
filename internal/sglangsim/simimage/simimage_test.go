package simimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/sglangd/sglangd/internal/testutil"
)

// fakeELF is enough of a binary for tests that only inspect the image.
func fakeELF(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sglang-sim")
	if err := os.WriteFile(p, append([]byte("\x7fELF"), bytes.Repeat([]byte{0}, 60)...), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuild_ConfigLikeNGCImage(t *testing.T) {
	img, err := Build(context.Background(), Options{Binary: fakeELF(t), Arch: "amd64", Labels: map[string]string{"extra": "1"}, Env: []string{"CUDA_VERSION=13.1.0", "FOO=bar"}})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/opt/nvidia/nvidia_entrypoint.sh" {
		t.Errorf("entrypoint = %q", got)
	}
	if len(cf.Config.Cmd) != 0 {
		t.Errorf("cmd = %q, want none (containers pass python3 -m sglang.launch_server)", cf.Config.Cmd)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform = %s/%s", cf.OS, cf.Architecture)
	}
	env := strings.Join(cf.Config.Env, "\n")
	for _, want := range []string{"CUDA_VERSION=13.1.0", "FOO=bar", "NVIDIA_DRIVER_CAPABILITIES=compute,utility,video", "PATH=/usr/local/nvidia/bin:"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %q:\n%s", want, env)
		}
	}
	if strings.Count(env, "CUDA_VERSION=") != 1 {
		t.Errorf("CUDA_VERSION overridden twice:\n%s", env)
	}
	if cf.Config.Labels["com.nvidia.cuda.version"] != DefaultCUDAVersion || cf.Config.Labels["extra"] != "1" {
		t.Errorf("labels = %v", cf.Config.Labels)
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = h
	}
	tests := []struct {
		path   string
		typ    byte
		mode   int64
		target string
	}{
		{"usr/local/bin/sglang-sim", tar.TypeReg, 0o755, ""},
		{"usr/bin/python3", tar.TypeSymlink, 0o777, "/usr/local/bin/sglang-sim"},
		{"usr/bin/python", tar.TypeSymlink, 0o777, "/usr/local/bin/sglang-sim"},
		{"opt/nvidia/nvidia_entrypoint.sh", tar.TypeSymlink, 0o777, "/usr/local/bin/sglang-sim"},
		{"tmp/", tar.TypeDir, 0o1777, ""},
		{"sgl-workspace/sglang/", tar.TypeDir, 0o755, ""},
	}
	for _, tc := range tests {
		h, ok := entries[tc.path]
		if !ok {
			t.Errorf("layer lacks %s", tc.path)
			continue
		}
		if h.Typeflag != tc.typ || h.Mode != tc.mode || h.Linkname != tc.target {
			t.Errorf("%s: type %c mode %o link %q, want %c %o %q", tc.path, h.Typeflag, h.Mode, h.Linkname, tc.typ, tc.mode, tc.target)
		}
	}
}

func TestBuild_Reproducible(t *testing.T) {
	bin := fakeELF(t)
	a, err := Build(context.Background(), Options{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(context.Background(), Options{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("same binary gave digests %s and %s", da, db)
	}
}

func TestBuild_RejectsNonELF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "script")
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
	if _, err := Build(context.Background(), Options{Binary: p}); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Fatalf("err = %v, want not an ELF", err)
	}
}

// TestPush_LoopbackRegistry pushes the image the way pkg/docker's tests will
// (as 127.0.0.1:PORT/nvidia/sglang:26.01-py3, with basic auth) and pulls it
// back.
func TestPush_LoopbackRegistry(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "$oauthtoken" || p != "key" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := Build(context.Background(), Options{Binary: fakeELF(t)})
	if err != nil {
		t.Fatal(err)
	}
	ref := NGCReference(host)
	if !strings.HasSuffix(ref, "/nvidia/sglang:26.01-py3") {
		t.Fatalf("reference %q", ref)
	}
	auth := remote.WithAuth(basicAuth{"$oauthtoken", "key"})
	if err := Push(context.Background(), img, ref); err == nil {
		t.Fatal("push without credentials succeeded")
	}
	if err := Push(context.Background(), img, ref, auth); err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	got, err := remote.Image(r, auth)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("pulled digest %s, pushed %s", d, want)
	}
}

type basicAuth struct{ user, pass string }

func (b basicAuth) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: b.user, Password: b.pass}, nil
}

func TestWriteTarball(t *testing.T) {
	img, err := Build(context.Background(), Options{Binary: fakeELF(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "img.tar")
	if err := WriteTarball(p, "127.0.0.1:5000/nvidia/sglang:26.01-py3", img); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	defer f.Close()
	tr := tar.NewReader(f)
	found := false
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "manifest.json" {
			b, _ := io.ReadAll(tr)
			found = strings.Contains(string(b), `"127.0.0.1:5000/nvidia/sglang:26.01-py3"`)
		}
	}
	if !found {
		t.Error("manifest.json lacks the RepoTag")
	}
	if err := WriteTarball(p, "Not A Tag", img); err == nil {
		t.Error("bad tag accepted")
	}
}

// TestDocker_RunHealthAndManualFlow loads the real image into the local engine,
// runs it as sglangd will (python3 -m sglang.launch_server, published port on
// 127.0.0.1), expects /health 200 from the host, then runs the manual client
// flow with the trace directory bind-mounted.
func TestDocker_RunHealthAndManualFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the Docker run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	api, err := client.New(client.FromEnv)
	if err != nil {
		t.Skipf("no Docker client: %v", err)
	}
	defer api.Close()
	if _, err := api.Ping(ctx, client.PingOptions{}); err != nil {
		t.Skipf("Docker engine not reachable (%v); this test needs it", err)
	}
	bin := testutil.BuildBinary(t, "./cmd/sglang-sim", "CGO_ENABLED=0", "GOOS=linux")
	img, err := Build(ctx, Options{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("sglangd/sglang-sim:test-%d", time.Now().UnixNano())
	if _, err := Load(ctx, api, img, tag); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		api.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	port := network.MustParsePort("30000/tcp")
	traces := t.TempDir()
	cr, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:        tag,
			Cmd:          []string{"python3", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B", "--host", "0.0.0.0", "--port", "30000", "--tp-size", "2"},
			Env:          []string{"SGLANG_SIM_LOAD_TIME=200ms", "SGLANG_SIM_HEALTH_POLL=50ms", "SGLANG_SIM_LAYERS=2", "SGLANG_TORCH_PROFILER_DIR=/traces"},
			ExposedPorts: network.PortSet{port: {}},
		},
		HostConfig: &container.HostConfig{
			PortBindings: network.PortMap{port: {{HostIP: netip.MustParseAddr("127.0.0.1")}}},
			Binds:        []string{traces + ":/traces"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		api.ContainerRemove(context.Background(), cr.ID, client.ContainerRemoveOptions{Force: true})
	})
	if _, err := api.ContainerStart(ctx, cr.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	ins, err := api.ContainerInspect(ctx, cr.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	binds := ins.Container.NetworkSettings.Ports[port]
	if len(binds) == 0 {
		t.Fatalf("no host binding for %s: %+v", port, ins.Container.NetworkSettings.Ports)
	}
	url := fmt.Sprintf("http://127.0.0.1:%s/health", binds[0].HostPort)
	var last string
	for ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			last = resp.Status
			if resp.StatusCode == http.StatusOK {
				break
			}
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("no /health 200 from the container (last: %s)\n%s", last, containerLogs(api, cr.ID))
	}
	// The manual client flow against the container: start, five
	// completions, stop; the traces land in the bind mount.
	base := strings.TrimSuffix(url, "/health")
	post := func(path, body string) (int, string) {
		res, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := post("/start_profile", ""); code != 200 || body != "Start profiling.\n" {
		t.Fatalf("start_profile: %d %q", code, body)
	}
	for range 5 {
		if code, body := post("/v1/completions", `{"model":"Qwen/Qwen3-8B","prompt":"hello","max_tokens":30,"temperature":0.1}`); code != 200 {
			t.Fatalf("completion: %d %s", code, body)
		}
	}
	if code, body := post("/stop_profile", ""); code != 200 {
		t.Fatalf("stop_profile: %d %q", code, body)
	}
	files, _ := filepath.Glob(filepath.Join(traces, "*-TP-*.trace.json.gz"))
	if len(files) != 2 {
		t.Fatalf("trace files in the bind mount: %v", files)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(fh)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		b, err := io.ReadAll(zr)
		fh.Close()
		if err != nil || !bytes.Contains(b, []byte(`"traceEvents": [`)) {
			t.Errorf("%s: %v, traceEvents present %v", f, err, bytes.Contains(b, []byte(`"traceEvents"`)))
		}
	}

	logs := containerLogs(api, cr.ID)
	for _, want := range []string{"== SGLang ==", " TP1] Load weight end", "The server is fired up and ready to roll!", " TP1] Profiling done. Traces are saved to: /traces"} {
		if !strings.Contains(logs, want) {
			t.Errorf("container log lacks %q:\n%s", want, logs)
		}
	}
}

func containerLogs(api *client.Client, id string) string {
	rc, err := api.ContainerLogs(context.Background(), id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(&out, "\n(log read error: %v)", err)
	}
	return out.String()
}
