package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"go.uber.org/zap"
)

// PullPolicy says when Pull contacts the registry.
type PullPolicy string

// Pull policies, as in the config's docker.pull_policy.
const (
	// PullIfMissing pulls only when the image is not present locally.
	PullIfMissing PullPolicy = "if-missing"
	// PullAlways pulls every time (cheap when nothing changed: the
	// engine then only fetches the manifest).
	PullAlways PullPolicy = "always"
	// PullNever never pulls; a missing image is an error.
	PullNever PullPolicy = "never"
)

// ParsePullPolicy accepts "", which means PullIfMissing.
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch p := PullPolicy(s); p {
	case "":
		return PullIfMissing, nil
	case PullIfMissing, PullAlways, PullNever:
		return p, nil
	}
	return "", fmt.Errorf("pull policy %q: %w: expected if-missing, always or never", s, errdefs.ErrInvalidArgument)
}

// PullEvent is one progress update, in the engine's words. Layer events
// go through "Pulling fs layer", "Waiting", "Downloading" (with
// Current/Total bytes), "Verifying Checksum", "Download complete",
// "Extracting" (bytes), "Pull complete", or "Already exists"; image-level
// events have no Layer ("Pulling from ...", "Digest: sha256:...",
// "Status: ...").
type PullEvent struct {
	Layer   string `json:"layer,omitempty"`
	Status  string `json:"status"`
	Current int64  `json:"current,omitempty"`
	Total   int64  `json:"total,omitempty"`
}

// Image describes a local image: what a session records about the server
// image it ran.
type Image struct {
	// Ref is the reference asked for, normalised (registry/repo:tag).
	Ref string `json:"ref"`
	// ID is the image's config digest (what `docker images` shows).
	ID string `json:"id"`
	// Digest is the manifest digest in Ref's repository (sha256:...), the
	// value to pin with repo@digest; empty for images never pulled.
	Digest string `json:"digest,omitempty"`
	// RepoDigest is repo@digest, when Digest is set.
	RepoDigest string `json:"repo_digest,omitempty"`
	Created    string `json:"created,omitempty"`
	Size       int64  `json:"size"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	// CUDAVersion comes from the label com.nvidia.cuda.version or the env
	// CUDA_VERSION (NGC and nvidia/cuda images set both).
	CUDAVersion string `json:"cuda_version,omitempty"`
	// SGLangVersion comes from a label or env naming SGLang's version,
	// when the image has one.
	SGLangVersion string            `json:"sglang_version,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	// Env holds the image's version-bearing variables (CUDA_*, NVIDIA_*,
	// SGLANG_*, NCCL_VERSION, PYTORCH_VERSION...).
	Env map[string]string `json:"env,omitempty"`
	// Pulled is true when this call downloaded something; false when the
	// image was present (if-missing, never) or up to date (always).
	Pulled bool `json:"pulled"`
	// CredentialSource says which credentials the pull used.
	CredentialSource string `json:"credential_source,omitempty"`
}

// Where versions are looked up, first match wins.
var (
	cudaLabels   = []string{"com.nvidia.cuda.version"}
	cudaEnv      = []string{"CUDA_VERSION"}
	sglangLabels = []string{"com.nvidia.sglang.version", "org.sglang.version", "sglang.version"}
	sglangEnv    = []string{"SGLANG_VERSION"}
	envPrefixes  = []string{"CUDA_", "NVIDIA_", "SGLANG_", "NCCL_VERSION", "PYTORCH_VERSION", "TORCH_VERSION", "CUDNN_VERSION", "TRT_VERSION"}
)

// NormalizeRef returns ref in full form (docker.io/library/x:latest) or an
// invalid-argument error.
func NormalizeRef(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(strings.TrimSpace(ref))
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w: %v (expected registry/repository:tag)", ref, errdefs.ErrInvalidArgument, err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// Pull makes ref present according to policy and returns what it is. fn,
// if not nil, receives progress: every status change of every layer, with
// byte-count updates coalesced for slow receivers, which never slow the
// pull down.
//
// The download itself runs detached from ctx: a caller giving up (a CLI
// interrupted) stops waiting, but the pull finishes for whoever asks next,
// and concurrent pulls of one reference share one download.
func (m *Manager) Pull(ctx context.Context, ref string, policy PullPolicy, fn func(PullEvent)) (*Image, error) {
	full, err := NormalizeRef(ref)
	if err != nil {
		return nil, err
	}
	if policy == "" {
		policy = PullIfMissing
	}
	if _, err := ParsePullPolicy(string(policy)); err != nil {
		return nil, err
	}
	if policy != PullAlways {
		img, err := m.Inspect(ctx, full)
		switch {
		case err == nil:
			m.metrics.pulls.WithLabelValues("present").Inc()
			return img, nil
		case !errdefs.IsNotFound(err):
			return nil, err
		case policy == PullNever:
			host, _ := RegistryOf(full)
			return nil, &PullError{Ref: full, Registry: host, Failure: PullNotPresent, Err: err}
		}
	}
	op, sub := m.joinPull(full)
	defer op.unsubscribe(sub)
	deliver := func() {
		if fn == nil {
			return
		}
		for _, ev := range sub.drain() {
			fn(ev)
		}
	}
	for {
		select {
		case <-sub.wake:
			deliver()
		case <-op.done:
			deliver()
			if op.err != nil {
				return nil, op.err
			}
			img := *op.img
			return &img, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Inspect describes a local image; a missing one is ErrNotFound.
func (m *Manager) Inspect(ctx context.Context, ref string) (*Image, error) {
	full, err := NormalizeRef(ref)
	if err != nil {
		return nil, err
	}
	res, err := m.cli.ImageInspect(ctx, full)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("image %s: %w", full, errdefs.ErrNotFound)
		}
		return nil, m.engineError("inspect image "+full, err)
	}
	return imageFrom(full, res.InspectResponse), nil
}

// List describes the local images of repository (registry/name, any tag),
// or every tagged image when repository is "".
func (m *Manager) List(ctx context.Context, repository string) ([]Image, error) {
	opts := client.ImageListOptions{}
	if repository != "" {
		named, err := reference.ParseNormalizedNamed(repository)
		if err != nil {
			return nil, fmt.Errorf("repository %q: %w: %v", repository, errdefs.ErrInvalidArgument, err)
		}
		// The engine matches the reference filter against familiar names.
		opts.Filters = make(client.Filters).Add("reference", reference.FamiliarName(named))
	}
	res, err := m.cli.ImageList(ctx, opts)
	if err != nil {
		return nil, m.engineError("list images", err)
	}
	var out []Image
	for _, s := range res.Items {
		for _, tag := range s.RepoTags {
			if tag == "<none>:<none>" {
				continue
			}
			img, err := m.Inspect(ctx, tag)
			if err != nil {
				continue // removed meanwhile
			}
			out = append(out, *img)
		}
	}
	return out, nil
}

func imageFrom(ref string, r image.InspectResponse) *Image {
	img := &Image{Ref: ref, ID: r.ID, Created: r.Created, Size: r.Size, OS: r.Os, Arch: r.Architecture}
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		for _, rd := range r.RepoDigests {
			d, err := reference.ParseNormalizedNamed(rd)
			if err != nil || d.Name() != named.Name() {
				continue
			}
			if dg, ok := d.(reference.Digested); ok {
				img.Digest, img.RepoDigest = dg.Digest().String(), d.String()
				break
			}
		}
	}
	if r.Config == nil {
		return img
	}
	img.Labels = r.Config.Labels
	env := map[string]string{}
	for _, kv := range r.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		for _, p := range envPrefixes {
			if strings.HasPrefix(k, p) {
				env[k] = v
				break
			}
		}
	}
	if len(env) > 0 {
		img.Env = env
	}
	img.CUDAVersion = firstOf(img.Labels, cudaLabels, env, cudaEnv)
	img.SGLangVersion = firstOf(img.Labels, sglangLabels, env, sglangEnv)
	return img
}

func firstOf(labels map[string]string, lkeys []string, env map[string]string, ekeys []string) string {
	for _, k := range lkeys {
		if v := labels[k]; v != "" {
			return v
		}
	}
	for _, k := range ekeys {
		if v := env[k]; v != "" {
			return v
		}
	}
	return ""
}

// pullOp is one download shared by every caller pulling the same ref.
type pullOp struct {
	ref  string
	done chan struct{}
	img  *Image
	err  error

	mu     sync.Mutex
	latest []PullEvent // latest event per layer, in first-seen order
	index  map[string]int
	subs   map[*subscriber]struct{}
}

// subscriber queues events for one waiting caller, coalescing byte-count
// updates when the caller is slower than the engine.
type subscriber struct {
	wake chan struct{}

	mu      sync.Mutex
	pending []PullEvent
	index   map[string]int
}

func newSubscriber() *subscriber {
	return &subscriber{wake: make(chan struct{}, 1), index: map[string]int{}}
}

// push queues ev. A newer update of the same layer and status replaces a
// queued one (byte counts), so the queue stays bounded by layers x
// statuses, while every status change of every layer is delivered.
func (s *subscriber) push(ev PullEvent) {
	key := ev.Layer + "\x00" + ev.Status
	s.mu.Lock()
	if i, ok := s.index[key]; ok {
		s.pending[i] = ev
	} else {
		s.index[key] = len(s.pending)
		s.pending = append(s.pending, ev)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) drain() []PullEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.pending
	s.pending, s.index = nil, map[string]int{}
	return out
}

func (op *pullOp) publish(ev PullEvent) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if i, ok := op.index[ev.Layer]; ok {
		op.latest[i] = ev
	} else {
		op.index[ev.Layer] = len(op.latest)
		op.latest = append(op.latest, ev)
	}
	for s := range op.subs {
		s.push(ev)
	}
}

func (op *pullOp) unsubscribe(s *subscriber) {
	op.mu.Lock()
	delete(op.subs, s)
	op.mu.Unlock()
}

// joinPull subscribes to the running pull of ref or starts one; a late
// subscriber first gets the latest state of every layer.
func (m *Manager) joinPull(ref string) (*pullOp, *subscriber) {
	sub := newSubscriber()
	m.mu.Lock()
	defer m.mu.Unlock()
	if op, ok := m.pulls[ref]; ok {
		op.mu.Lock()
		for _, ev := range op.latest {
			sub.push(ev)
		}
		op.subs[sub] = struct{}{}
		op.mu.Unlock()
		return op, sub
	}
	op := &pullOp{ref: ref, done: make(chan struct{}), index: map[string]int{}, subs: map[*subscriber]struct{}{sub: {}}}
	m.pulls[ref] = op
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		op.img, op.err = m.pull(m.base, op)
		m.mu.Lock()
		delete(m.pulls, ref)
		m.mu.Unlock()
		close(op.done)
	}()
	return op, sub
}

func (m *Manager) pull(ctx context.Context, op *pullOp) (*Image, error) {
	start := time.Now()
	host, err := RegistryOf(op.ref)
	if err != nil {
		return nil, err
	}
	log := m.log.With(zap.String("image", op.ref), zap.String("registry", host))
	auth, source, err := m.opts.Credentials.resolve(host)
	if err != nil {
		m.metrics.pulls.WithLabelValues("error").Inc()
		return nil, err
	}
	log.Info("pulling image", zap.String("credentials", source))
	fail := func(err error) (*Image, error) {
		if client.IsErrConnectionFailed(err) {
			m.metrics.pulls.WithLabelValues("error").Inc()
			return nil, m.engineError("pull "+op.ref, err)
		}
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return nil, fmt.Errorf("pull %s: sglangd is stopping: %w", op.ref, err)
		}
		pe := &PullError{Ref: op.ref, Registry: host, Failure: classifyPull(err), Source: source, Err: err}
		m.metrics.pulls.WithLabelValues(string(pe.Failure)).Inc()
		log.Warn("image pull failed", zap.String("failure", string(pe.Failure)), zap.String("credentials", source), zap.Error(err))
		return nil, pe
	}
	rc, err := m.cli.ImagePull(ctx, op.ref, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		return fail(err)
	}
	var digest string
	upToDate := false
	for jm, err := range rc.JSONMessages(ctx) {
		if err != nil {
			return fail(err)
		}
		if jm.Error != nil {
			return fail(errors.New(jm.Error.Message))
		}
		ev := PullEvent{Layer: jm.ID, Status: jm.Status}
		if jm.Progress != nil {
			ev.Current, ev.Total = jm.Progress.Current, jm.Progress.Total
		}
		// Image-level lines carry the tag (or nothing) as their ID; only
		// layer lines carry a layer's short digest.
		if ev.Layer != "" && strings.HasPrefix(ev.Status, "Pulling from ") {
			ev.Layer = ""
		}
		if d, ok := strings.CutPrefix(ev.Status, "Digest: "); ok {
			digest = strings.TrimSpace(d)
		}
		upToDate = upToDate || strings.HasPrefix(ev.Status, "Status: Image is up to date")
		if ev.Status == "" {
			continue
		}
		op.publish(ev)
	}
	img, err := m.Inspect(ctx, op.ref)
	if err != nil {
		return nil, fmt.Errorf("pull %s: finished but the image is not there: %w", op.ref, err)
	}
	if img.Digest == "" && digest != "" {
		img.Digest = digest
	}
	img.Pulled, img.CredentialSource = !upToDate, source
	if upToDate {
		m.metrics.pulls.WithLabelValues("up_to_date").Inc()
	} else {
		m.metrics.pulls.WithLabelValues("pulled").Inc()
	}
	m.metrics.pullSeconds.Observe(time.Since(start).Seconds())
	log.Info("pulled image", zap.String("digest", img.Digest), zap.String("id", img.ID),
		zap.String("cuda", img.CUDAVersion), zap.String("sglang", img.SGLangVersion), zap.Duration("took", time.Since(start)))
	return img, nil
}
