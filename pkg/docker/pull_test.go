package docker

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/internal/sglangsim/simimage"
	"github.com/sglangd/sglangd/internal/testutil/registrytest"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestPull_Credentials(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, NGCUser, registrytest.ImageOptions{})
	wrongKey := "wrong-key-" + randHex(8)
	tests := []struct {
		name        string
		ref         string
		creds       func(t *testing.T) Credentials
		wantSource  string
		wantFailure PullFailure
		wantClass   error
		wantText    string
	}{
		{name: "ngc key", ref: r.ref, wantSource: CredentialsNGC,
			creds: func(*testing.T) Credentials {
				return Credentials{NGCAPIKey: r.Password, NGCRegistries: []string{r.Host}}
			}},
		{name: "docker config", ref: r.ref, wantSource: CredentialsDockerConfig,
			creds: func(t *testing.T) Credentials { return dockerConfigCreds(t, r) }},
		{name: "ngc key wins over docker config", ref: r.ref, wantSource: CredentialsNGC,
			creds: func(t *testing.T) Credentials {
				c := Credentials{UseDockerConfig: true, DockerConfigDir: registrytest.DockerConfig(t, r.Host, "nobody", "bad")}
				c.NGCAPIKey, c.NGCRegistries = r.Password, []string{r.Host}
				return c
			}},
		{name: "wrong key", ref: r.ref, wantFailure: PullUnauthenticated, wantClass: errdefs.ErrUnauthenticated, wantText: "refused the credentials",
			creds: func(*testing.T) Credentials {
				return Credentials{NGCAPIKey: wrongKey, NGCRegistries: []string{r.Host}}
			}},
		{name: "missing credentials", ref: r.ref, wantFailure: PullUnauthenticated, wantClass: errdefs.ErrUnauthenticated, wantText: "no basic auth credentials",
			creds: func(t *testing.T) Credentials {
				// A key for another registry and an empty Docker config.
				return Credentials{NGCAPIKey: "k", UseDockerConfig: true, DockerConfigDir: t.TempDir()}
			}},
		{name: "unknown image", ref: r.Ref("sglangd-test/nothere-" + randHex(4) + ":1"), wantFailure: PullNotFound, wantClass: errdefs.ErrNotFound, wantText: "image not found",
			creds: func(*testing.T) Credentials {
				return Credentials{NGCAPIKey: r.Password, NGCRegistries: []string{r.Host}}
			}},
		{name: "unknown tag", ref: strings.Replace(r.ref, ":26.01-py3", ":nope", 1), wantFailure: PullNotFound, wantClass: errdefs.ErrNotFound, wantText: "manifest unknown",
			creds: func(*testing.T) Credentials {
				return Credentials{NGCAPIKey: r.Password, NGCRegistries: []string{r.Host}}
			}},
		{name: "unreachable registry", ref: closedPort(t) + "/nvidia/sglang:26.01-py3", wantFailure: PullUnreachable, wantClass: errdefs.ErrUnavailable, wantText: "unreachable",
			creds: func(*testing.T) Credentials { return Credentials{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := testOptions(t)
			opts.Credentials = tt.creds(t)
			m := newManager(t, opts)
			img, err := m.Pull(context.Background(), tt.ref, PullAlways, nil)
			if tt.wantFailure == "" {
				if err != nil {
					t.Fatalf("Pull: %v", err)
				}
				// Parallel cases pull one image: the first downloads it, the
				// others find it up to date, both after the registry
				// accepted their credentials.
				if img.CredentialSource != tt.wantSource || img.Digest == "" {
					t.Fatalf("image = %+v, want one pulled with %s credentials, with a digest", img, tt.wantSource)
				}
				return
			}
			if err == nil {
				t.Fatalf("Pull succeeded, want %s failure", tt.wantFailure)
			}
			var pe *PullError
			if !errors.As(err, &pe) || pe.Failure != tt.wantFailure {
				t.Fatalf("error %v (%T), want PullError %s", err, err, tt.wantFailure)
			}
			if !errors.Is(err, tt.wantClass) {
				t.Errorf("error %v is not %v", err, tt.wantClass)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not mention %q", err, tt.wantText)
			}
			if HintOf(err) == "" {
				t.Errorf("error %q has no hint", err)
			}
			if strings.Contains(err.Error(), wrongKey) || strings.Contains(err.Error(), r.Password) || strings.Contains(HintOf(err), wrongKey) {
				t.Errorf("error leaks a secret: %q", err)
			}
		})
	}
}

func TestPull_ProgressPolicyAndLabels(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{
		PayloadBytes: 3 << 20,
		// Labels unlike the image's CUDA_VERSION and SGLANG_VERSION: the
		// labels win.
		Labels: map[string]string{"com.nvidia.cuda.version": "13.0.2.006", "com.nvidia.sglang.version": "0.5.6"},
	})
	opts := testOptions(t)
	opts.Credentials = dockerConfigCreds(t, r)
	m := newManager(t, opts)
	ctx := context.Background()

	// never, before anything is there: not present, and no registry call.
	before := r.ManifestRequests()
	_, err := m.Pull(ctx, r.ref, PullNever, nil)
	var pe *PullError
	if !errors.As(err, &pe) || pe.Failure != PullNotPresent || !errdefs.IsNotFound(err) {
		t.Fatalf("policy never on a missing image: %v, want not present / not found", err)
	}

	var mu sync.Mutex
	seen := map[string]map[string]bool{} // layer -> statuses
	var downloading []PullEvent
	img, err := m.Pull(ctx, r.ref, PullIfMissing, func(ev PullEvent) {
		mu.Lock()
		defer mu.Unlock()
		if seen[ev.Layer] == nil {
			seen[ev.Layer] = map[string]bool{}
		}
		seen[ev.Layer][ev.Status] = true
		if ev.Status == "Downloading" {
			downloading = append(downloading, ev)
		}
	})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if !img.Pulled {
		t.Errorf("if-missing on a missing image did not pull")
	}
	layers := 0
	for layer, st := range seen {
		if layer == "" {
			continue
		}
		layers++
		if !st["Pull complete"] && !st["Already exists"] {
			t.Errorf("layer %s never completed: %v", layer, st)
		}
	}
	if layers != 2 {
		t.Errorf("progress for %d layers, want 2 (simulator, payload): %v", layers, seen)
	}
	payloadSeen := false
	for _, ev := range downloading {
		payloadSeen = payloadSeen || (ev.Total >= 3<<20 && ev.Current > 0 && ev.Layer != "")
	}
	if !payloadSeen {
		t.Errorf("no Downloading event with the payload's total size: %v", downloading)
	}
	var digestSeen bool
	for st := range seen[""] {
		digestSeen = digestSeen || strings.HasPrefix(st, "Digest: "+img.Digest)
	}
	if !digestSeen {
		t.Errorf("no image-level Digest event for %s: %v", img.Digest, seen[""])
	}
	if !strings.HasPrefix(img.Digest, "sha256:") || img.RepoDigest != strings.TrimSuffix(r.ref, ":26.01-py3")+"@"+img.Digest {
		t.Errorf("digest %q / repo digest %q", img.Digest, img.RepoDigest)
	}
	if img.CUDAVersion != "13.0.2.006" || img.SGLangVersion != "0.5.6" {
		t.Errorf("versions cuda=%q sglang=%q, want the labels' 13.0.2.006 / 0.5.6", img.CUDAVersion, img.SGLangVersion)
	}
	if img.Env["NVIDIA_SGLANG_VERSION"] != "26.01" || img.Env["CUDA_VERSION"] != simimage.DefaultCUDAVersion || img.Env["PATH"] != "" || img.Env["LC_ALL"] != "" {
		t.Errorf("env = %v, want version variables only", img.Env)
	}
	if r.ManifestRequests() == before {
		t.Errorf("the pull never fetched a manifest from the registry")
	}

	// if-missing and never on a present image: no registry call, same image.
	for _, p := range []PullPolicy{PullIfMissing, PullNever} {
		before = r.ManifestRequests()
		again, err := m.Pull(ctx, r.ref, p, nil)
		if err != nil {
			t.Fatalf("Pull %s: %v", p, err)
		}
		if again.Pulled || again.Digest != img.Digest || r.ManifestRequests() != before {
			t.Errorf("policy %s on a present image: pulled=%v digest=%s, %d manifest GETs", p, again.Pulled, again.Digest, r.ManifestRequests()-before)
		}
	}
	// always asks the registry again, and finds it up to date.
	before = r.ManifestRequests()
	again, err := m.Pull(ctx, r.ref, PullAlways, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.ManifestRequests() == before || again.Pulled || again.Digest != img.Digest {
		t.Errorf("policy always on an up-to-date image: %d manifest requests, pulled=%v", r.ManifestRequests()-before, again.Pulled)
	}

	list, err := m.List(ctx, strings.TrimSuffix(r.ref, ":26.01-py3"))
	if err != nil || len(list) != 1 || list[0].Digest != img.Digest {
		t.Errorf("List = %+v, %v; want the one pulled image", list, err)
	}
}

func TestPull_ConcurrentCallersShareOneDownload(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{PayloadBytes: 1 << 20})
	opts := testOptions(t)
	opts.Credentials = dockerConfigCreds(t, r)
	m := newManager(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	// The first caller gives up at once; the pull goes on for the second.
	op, sub := m.joinPull(mustNormalize(t, r.ref))
	op.unsubscribe(sub)
	cancel()
	_, err := m.Pull(ctx, r.ref, PullAlways, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	img, err := m.Pull(context.Background(), r.ref, PullAlways, nil)
	if err != nil || !img.Pulled {
		t.Fatalf("second caller: %+v, %v", img, err)
	}
	<-op.done
	if op.err != nil {
		t.Fatalf("detached pull failed: %v", op.err)
	}
}

func mustNormalize(t *testing.T, ref string) string {
	full, err := NormalizeRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return full
}
