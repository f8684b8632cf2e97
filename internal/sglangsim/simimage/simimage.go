// Package simimage assembles a container image of the SGLang simulator
// (cmd/sglang-sim) without a registry, a base image or a Docker build: one
// layer holding the static binary, python3/python links to it and an NGC-style
// /opt/nvidia/nvidia_entrypoint.sh, with environment and labels like NVIDIA's
// SGLang image. Tests load it into the local engine (Load, WriteTarball) or
// push it to a loopback registry (Push), for example as
// 127.0.0.1:PORT/nvidia/sglang:26.01-py3, and run it with
// `python3 -m sglang.launch_server ...` like the real image.
package simimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"

	"github.com/sglangd/sglangd/internal/sglangsim"
)

const (
	// DefaultTag is the local tag `make sim-image` loads the image as.
	DefaultTag = "sglangd/sglang-sim:dev"
	// NGCRepository and NGCTag name the real image the simulator stands in
	// for; tests push it as <registry>/NGCRepository:NGCTag.
	NGCRepository = "nvidia/sglang"
	NGCTag        = "26.01-py3"
	// DefaultCUDAVersion is the CUDA toolkit the NGC SGLang image declares
	// (CUDA_VERSION and com.nvidia.cuda.version), from which sglangd derives
	// its driver floor.
	DefaultCUDAVersion = "13.0.2"

	modulePath = "github.com/sglangd/sglangd"
	binaryPath = "usr/local/bin/sglang-sim"
	entryPath  = "/opt/nvidia/nvidia_entrypoint.sh"
)

// created is the fixed creation time of the image and its files, so the same
// binary always yields the same digest.
var created = time.Date(2026, 1, 20, 0, 0, 0, 0, time.UTC)

// Options configure Build.
type Options struct {
	// Binary is a static Linux sglang-sim binary (CGO_ENABLED=0). Empty means
	// BuildBinary is run into a temporary directory.
	Binary string
	// Arch is the GOARCH of the image and of a binary built here; default
	// runtime.GOARCH.
	Arch string
	// CUDAVersion sets CUDA_VERSION and com.nvidia.cuda.version; default
	// DefaultCUDAVersion.
	CUDAVersion string
	// SGLangVersion sets SGLANG_VERSION (also what the simulator reports in
	// /server_info); default sglangsim.DefaultVersion.
	SGLangVersion string
	// Env entries ("KEY=value") are added to, or replace, the defaults.
	Env []string
	// Labels are added to, or replace, the default labels.
	Labels map[string]string
}

// NGCReference returns "<registry>/nvidia/sglang:26.01-py3", the reference
// tests push the image as (registry is host:port, e.g. 127.0.0.1:5000).
func NGCReference(registry string) string {
	return registry + "/" + NGCRepository + ":" + NGCTag
}

// BuildBinary compiles cmd/sglang-sim as a static Linux binary into dir and
// returns its path. It runs the go tool from the sglangd module root found
// above the working directory (tests run inside the module), so Go's build
// cache makes repeated calls cheap.
func BuildBinary(ctx context.Context, dir, goarch string) (string, error) {
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build sglang-sim: the go tool is not on PATH (%v); install Go or pass Options.Binary: %w", err, errdefs.ErrFailedPrecondition)
	}
	out := filepath.Join(dir, "sglang-sim")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", out, modulePath+"/cmd/sglang-sim")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build sglang-sim (go build in %s): %v: %s", root, err, strings.TrimSpace(string(b)))
	}
	return out, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module "+modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("build sglang-sim: no %s go.mod above the working directory; run from inside the sglangd checkout or pass Options.Binary: %w", modulePath, errdefs.ErrFailedPrecondition)
		}
		dir = parent
	}
}

// Build assembles the simulator image. The configuration mirrors NVIDIA's
// SGLang image: entrypoint /opt/nvidia/nvidia_entrypoint.sh (which execs its
// arguments), no default command, working directory /sgl-workspace/sglang,
// CUDA/NVIDIA environment and com.nvidia.* labels.
func Build(ctx context.Context, opts Options) (v1.Image, error) {
	if opts.Arch == "" {
		opts.Arch = runtime.GOARCH
	}
	if opts.CUDAVersion == "" {
		opts.CUDAVersion = DefaultCUDAVersion
	}
	if opts.SGLangVersion == "" {
		opts.SGLangVersion = sglangsim.DefaultVersion
	}
	bin := opts.Binary
	if bin == "" {
		dir, err := os.MkdirTemp("", "sglang-sim-build-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if bin, err = BuildBinary(ctx, dir, opts.Arch); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read simulator binary %s: %w", bin, err)
	}
	if len(data) < 4 || string(data[:4]) != "\x7fELF" {
		return nil, fmt.Errorf("simulator binary %s is not an ELF executable; build it with GOOS=linux CGO_ENABLED=0: %w", bin, errdefs.ErrInvalidArgument)
	}
	layerTar, err := layerTarball(data)
	if err != nil {
		return nil, err
	}
	// Compressed once: a test pushes or loads the same ~9 MB binary many times.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("simulator image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("simulator image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = opts.Arch
	cf.Created = v1.Time{Time: created}
	cf.Author = "sglangd sglang-sim"
	cf.Config.Entrypoint = []string{entryPath}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/sgl-workspace/sglang"
	cf.Config.Env = mergeEnv(defaultEnv(opts), opts.Env)
	cf.Config.Labels = defaultLabels(opts)
	for k, v := range opts.Labels {
		cf.Config.Labels[k] = v
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("simulator image config: %w", err)
	}
	return img, nil
}

func defaultEnv(o Options) []string {
	return []string{
		"PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"CUDA_VERSION=" + o.CUDAVersion,
		"CUDA_DRIVER_VERSION=580.95.05",
		"NVIDIA_REQUIRE_CUDA=cuda>=9.0",
		"NVIDIA_DRIVER_CAPABILITIES=compute,utility,video",
		"NVIDIA_VISIBLE_DEVICES=all",
		"NVIDIA_PRODUCT_NAME=SGLang",
		"NVIDIA_SGLANG_VERSION=26.01",
		"NCCL_VERSION=2.28.9",
		"SGLANG_VERSION=" + o.SGLangVersion,
		"SGLANG_SIM_VERSION=" + o.SGLangVersion,
		"PYTHONIOENCODING=utf-8",
		"LC_ALL=C.UTF-8",
	}
}

func defaultLabels(o Options) map[string]string {
	return map[string]string{
		"com.nvidia.cuda.version":              o.CUDAVersion,
		"com.nvidia.volumes.needed":            "nvidia_driver",
		"com.nvidia.nccl.version":              "2.28.9",
		"com.nvidia.sglang.version":            o.SGLangVersion,
		"com.nvidia.build.id":                  "sglang-sim",
		"org.opencontainers.image.title":       "sglang-sim",
		"org.opencontainers.image.description": "SGLang simulator for sglangd tests: serves SGLang's HTTP API and writes synthetic Kineto traces; runs no GPU code",
		"io.sglangd.simulator":                 "true",
	}
}

func mergeEnv(base, extra []string) []string {
	idx := map[string]int{}
	out := append([]string(nil), base...)
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		idx[k] = i
	}
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			continue
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// layerTarball lays out the image's single layer.
func layerTarball(bin []byte) ([]byte, error) {
	type entry struct {
		hdr  tar.Header
		data []byte
	}
	dir := func(p string, mode int64) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode}}
	}
	link := func(p, target string) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777}}
	}
	file := func(p string, mode int64, data []byte) entry {
		return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data))}, data: data}
	}
	entries := []entry{
		dir("etc", 0o755),
		file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")),
		file("etc/group", 0o644, []byte("root:x:0:\n")),
		dir("opt", 0o755),
		dir("opt/nvidia", 0o755),
		link(strings.TrimPrefix(entryPath, "/"), "/"+binaryPath),
		dir("root", 0o700),
		dir("sgl-workspace", 0o755),
		dir("sgl-workspace/sglang", 0o755),
		dir("tmp", 0o1777),
		dir("usr", 0o755),
		dir("usr/bin", 0o755),
		link("usr/bin/python", "/"+binaryPath),
		link("usr/bin/python3", "/"+binaryPath),
		link("usr/bin/python3.12", "/"+binaryPath),
		dir("usr/local", 0o755),
		dir("usr/local/bin", 0o755),
		file(binaryPath, 0o755, bin),
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].hdr.Name < entries[j].hdr.Name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.ModTime = created
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", h.Name, err)
		}
		if len(e.data) > 0 {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", h.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTarball writes img as a `docker load` tarball tagged tag.
func WriteTarball(path, tag string, img v1.Image) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("image tag %q: %v: %w", tag, err, errdefs.ErrInvalidArgument)
	}
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		return fmt.Errorf("write image tarball %s: %w", path, err)
	}
	return nil
}

// Push uploads img to a registry as ref (e.g. NGCReference("127.0.0.1:5000")).
// go-containerregistry speaks plain HTTP to loopback registries; pass
// remote.WithAuth for registries that need credentials.
func Push(ctx context.Context, img v1.Image, ref string, opts ...remote.Option) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	opts = append([]remote.Option{remote.WithContext(ctx)}, opts...)
	if err := remote.Write(r, img, opts...); err != nil {
		return fmt.Errorf("push simulator image to %s: %w", ref, err)
	}
	return nil
}

// ImageLoader is the part of the moby client Load needs.
type ImageLoader interface {
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (client.ImageLoadResult, error)
}

// Load streams img into the Docker engine as tag (like `docker load`) and
// returns the engine's load report.
func Load(ctx context.Context, api ImageLoader, img v1.Image, tag string) (string, error) {
	ref, err := name.NewTag(tag)
	if err != nil {
		return "", fmt.Errorf("image tag %q: %v: %w", tag, err, errdefs.ErrInvalidArgument)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(ref, img, pw)) }()
	res, err := api.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		return "", fmt.Errorf("docker load %s: %w", tag, err)
	}
	defer res.Close()
	out, err := io.ReadAll(res)
	if err != nil {
		return "", fmt.Errorf("docker load %s: read response: %w", tag, err)
	}
	if i := bytes.Index(out, []byte(`"errorDetail"`)); i >= 0 {
		return string(out), fmt.Errorf("docker load %s: %s", tag, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
