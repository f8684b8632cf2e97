// Package registrytest runs an OCI registry on loopback behind HTTP basic
// auth and assembles small runnable images to push to it, so tests can make
// the real Docker engine pull without leaving 127.0.0.0/8. Docker treats
// 127.0.0.0/8 as an insecure registry range, so plain HTTP works.
//
// The registry is go-containerregistry's in-process one; the images are built
// in Go (no Docker build, no base image): a static fakesglang binary
// installed as /usr/bin/python3, so the container's command line is exactly
// sglangd's `python3 -m sglang.launch_server ...`.
package registrytest

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sglangd/sglangd/internal/testutil"
)

// Registry is a loopback registry requiring one user and password.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	Host     string
	User     string
	Password string

	srv       *httptest.Server
	manifests atomic.Int64
	denied    atomic.Int64
}

// Start runs a registry for the test's lifetime. Every /v2/ request needs
// basic auth with user and password; others get 401 with a Basic challenge,
// as distribution's htpasswd mode answers.
func Start(tb testing.TB, user, password string) *Registry {
	tb.Helper()
	r := &Registry{User: user, Password: password}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(r.User)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(r.Password)) != 1 {
			r.denied.Add(1)
			w.Header().Set("Www-Authenticate", `Basic realm="registrytest"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`)
			return
		}
		if strings.Contains(req.URL.Path, "/manifests/") && (req.Method == http.MethodGet || req.Method == http.MethodHead) {
			r.manifests.Add(1)
		}
		reg.ServeHTTP(w, req)
	}))
	tb.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// Ref returns the full reference of repoTag ("nvidia/sglang:26.01-py3") in
// this registry.
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// ManifestRequests counts authorised manifest GETs and HEADs, to tell
// whether a pull reached the registry (an up-to-date pull only HEADs).
func (r *Registry) ManifestRequests() int64 { return r.manifests.Load() }

// Denied counts requests refused for missing or wrong credentials.
func (r *Registry) Denied() int64 { return r.denied.Load() }

// Push uploads img as ref with the registry's credentials.
func (r *Registry) Push(tb testing.TB, ref string, img v1.Image) {
	tb.Helper()
	tag, err := name.ParseReference(ref)
	if err != nil {
		tb.Fatalf("parse %s: %v", ref, err)
	}
	if err := remote.Write(tag, img, remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password})); err != nil {
		tb.Fatalf("push %s: %v", ref, err)
	}
}

// ImageOptions shape a test image.
type ImageOptions struct {
	// PayloadBytes adds a layer of that many random bytes, unique to this
	// image, so a pull has a layer that downloads with progress.
	PayloadBytes int
	Labels       map[string]string
	// Env is added to the image config after PATH.
	Env []string
}

// FakeServerImage returns an image whose /usr/bin/python3 is fakesglang.
func FakeServerImage(tb testing.TB, o ImageOptions) v1.Image {
	tb.Helper()
	layers := []v1.Layer{binaryLayer(tb)}
	if o.PayloadBytes > 0 {
		payload := make([]byte, o.PayloadBytes)
		_, _ = rand.Read(payload)
		layers = append(layers, layer(tb, []file{
			{name: "opt/", dir: true, mode: 0o755},
			{name: "opt/payload.bin", body: payload, mode: 0o644},
		}))
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		tb.Fatalf("append layers: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		tb.Fatalf("config file: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Now().UTC().Truncate(time.Second)}
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, o.Env...)
	cf.Config.Labels = o.Labels
	cf.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		tb.Fatalf("set config: %v", err)
	}
	return img
}

type file struct {
	name string
	body []byte
	mode int64
	dir  bool
}

// layer writes a gzip layer by hand: crane.Layer would store mode 0, and a
// non-executable python3 makes the container fail with "permission denied".
func layer(tb testing.TB, files []file) v1.Layer {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg,
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatalf("tar header %s: %v", f.name, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			tb.Fatalf("tar body %s: %v", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatalf("tar close: %v", err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithCompressedCaching)
	if err != nil {
		tb.Fatalf("layer: %v", err)
	}
	return l
}

var (
	binOnce sync.Once
	binData []byte
	binErr  error

	layerOnce sync.Once
	binLayer  v1.Layer
)

// binaryLayer is the fakesglang layer, built and compressed once per test
// process (every image shares it; only payload layers differ).
func binaryLayer(tb testing.TB) v1.Layer {
	tb.Helper()
	bin := fakeServerBinary(tb)
	layerOnce.Do(func() {
		binLayer = layer(tb, []file{
			{name: "usr/", dir: true, mode: 0o755},
			{name: "usr/bin/", dir: true, mode: 0o755},
			{name: "usr/bin/python3", body: bin, mode: 0o755},
			{name: "tmp/", dir: true, mode: 0o1777},
		})
	})
	return binLayer
}

// fakeServerBinary builds fakesglang once per test process, statically
// (CGO_ENABLED=0: a scratch image has no libc), and keeps it in memory.
func fakeServerBinary(tb testing.TB) []byte {
	tb.Helper()
	root := testutil.RepoRoot(tb)
	binOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("go toolchain not on PATH: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "fakesglang-")
		if err != nil {
			binErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "python3")
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out,
			"github.com/sglangd/sglangd/internal/testutil/registrytest/fakesglang")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build fakesglang: %v\n%s", err, b)
			return
		}
		binData, binErr = os.ReadFile(out)
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binData
}

// DockerConfig writes a Docker client config directory whose auths entry
// holds user:password for host, and returns the directory.
func DockerConfig(tb testing.TB, host, user, password string) string {
	tb.Helper()
	dir := tb.TempDir()
	auth := map[string]any{"auths": map[string]any{host: map[string]string{
		"auth": encodeBasic(user, password)}}}
	b, _ := json.Marshal(auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func encodeBasic(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}
