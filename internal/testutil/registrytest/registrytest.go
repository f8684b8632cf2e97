// Package registrytest runs an OCI registry on loopback behind HTTP basic
// auth and pushes the SGLang simulator image to it as the NGC image's path,
// 127.0.0.1:PORT/nvidia/sglang:26.01-py3, so tests make the real Docker
// engine pull and run it without leaving 127.0.0.0/8. Docker treats
// 127.0.0.0/8 as an insecure registry range, so plain HTTP works.
//
// The registry is go-containerregistry's in-process one; the image is
// internal/sglangsim/simimage's (no Docker build, no base image), whose
// python3 runs sglang-sim, so a container's command line is exactly
// sglangd's `python3 -m sglang.launch_server ...`.
package registrytest

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/sglangd/sglangd/internal/sglangsim"
	"github.com/sglangd/sglangd/internal/sglangsim/simimage"
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
	if err := simimage.Push(context.Background(), img, ref, remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password})); err != nil {
		tb.Fatal(err)
	}
}

// ImageOptions shape a test image.
type ImageOptions struct {
	// PayloadBytes appends a layer of that many random bytes, unique to this
	// image, so a pull has a layer that downloads with progress.
	PayloadBytes int
	// Labels are added to, or replace, the simulator image's labels.
	Labels map[string]string
}

var (
	simOnce sync.Once
	simBase v1.Image
	simErr  error
)

// SimImage returns the SGLang simulator image (simimage.Build) with
// sglangsim.TestEnv's millisecond timings in its environment, so that its
// containers get ready at once; a container's own SGLANG_SIM_* variables
// override them. The simulator is built and its layer compressed once per
// test process; o only adds a payload layer and labels.
func SimImage(tb testing.TB, o ImageOptions) v1.Image {
	tb.Helper()
	// -ldflags=-s (which implies -w) halves the layer every test pushes and pulls.
	bin := testutil.BuildBinary(tb, "./cmd/sglang-sim", "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-trimpath -ldflags=-s")
	simOnce.Do(func() {
		simBase, simErr = simimage.Build(context.Background(), simimage.Options{Binary: bin, Env: sglangsim.TestEnv()})
	})
	if simErr != nil {
		tb.Fatalf("simulator image: %v", simErr)
	}
	img := simBase
	if o.PayloadBytes > 0 {
		payload, err := random.Layer(int64(o.PayloadBytes), types.DockerLayer)
		if err != nil {
			tb.Fatalf("payload layer: %v", err)
		}
		if img, err = mutate.AppendLayers(img, payload); err != nil {
			tb.Fatalf("append payload layer: %v", err)
		}
	}
	if len(o.Labels) > 0 {
		cfg, err := img.ConfigFile()
		if err != nil {
			tb.Fatalf("image config: %v", err)
		}
		c := cfg.Config
		c.Labels = maps.Clone(c.Labels)
		maps.Copy(c.Labels, o.Labels)
		if img, err = mutate.Config(img, c); err != nil {
			tb.Fatalf("set labels: %v", err)
		}
	}
	return img
}

// PushSim pushes SimImage(o) as the NGC image's path in this registry,
// 127.0.0.1:PORT/nvidia/sglang:26.01-py3, and returns that reference.
func (r *Registry) PushSim(tb testing.TB, o ImageOptions) string {
	tb.Helper()
	ref := simimage.NGCReference(r.Host)
	r.Push(tb, ref, SimImage(tb, o))
	return ref
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
