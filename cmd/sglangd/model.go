package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/config"
	"github.com/sglangd/sglangd/pkg/model"
	"github.com/sglangd/sglangd/pkg/operation"
)

// modelOptions maps the model section (and the HF token) onto the model
// package's options.
func modelOptions(cfg config.Config, log *zap.Logger, reg prometheus.Registerer, build api.BuildInfo) model.Options {
	m := cfg.Model
	cacheDir := m.CacheDir
	if cacheDir == "" {
		cacheDir = filepath.Join(cfg.DataDir, "hf", "hub")
	}
	retries := m.Retries
	if retries == 0 {
		retries = -1 // the config's 0 means none; the package's 0 means default
	}
	return model.Options{
		Logger:             log,
		Registerer:         reg,
		CacheDir:           cacheDir,
		StateDir:           filepath.Join(cfg.DataDir, "model"),
		Endpoint:           m.Endpoint,
		Token:              cfg.Secrets.HFToken,
		UserAgent:          fmt.Sprintf("sglangd/%s; go/%s", build.Version, build.GoVersion),
		Include:            nonNil(m.Include),
		Exclude:            nonNil(m.Exclude),
		PartSize:           int64(m.PartSize),
		ConnectionsPerFile: m.ConnectionsPerFile,
		ConcurrentFiles:    m.ConcurrentFiles,
		MaxConnections:     m.MaxConnections,
		StallTimeout:       m.StallTimeout.D(),
		Retries:            retries,
		NoSync:             !m.Fsync,
	}
}

// nonNil keeps an explicitly empty pattern list empty instead of letting
// the package fall back to its defaults.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// modelBackend serves /v1/models from the model package. Pulls run as
// operations of the daemon's manager, keyed by repo, commit and file
// selection, so a second client attaches to the running download.
type modelBackend struct {
	cache *model.Cache
	ops   *operation.Manager
}

func (b modelBackend) Pull(ctx context.Context, req api.ModelPullRequest) (string, operation.Func, error) {
	commit, err := b.cache.Resolve(ctx, req.Repo, req.Revision)
	if err != nil {
		return "", nil, err
	}
	mreq := model.PullRequest{Repo: req.Repo, Revision: req.Revision, Commit: commit, Include: req.Include, Exclude: req.Exclude}
	fn := func(ctx context.Context, report func(key string, v any)) (any, error) {
		sent := map[string]api.ModelFileProgress{}
		snap, err := b.cache.Pull(ctx, mreq, func(p model.Progress) {
			report(api.ModelPullOverallKey, pullEvent(p))
			for _, f := range p.Active {
				fp := fileEvent(f)
				if sent[f.Path] != fp {
					sent[f.Path] = fp
					report(api.ModelPullFilePrefix+f.Path, fp)
				}
			}
		})
		if err != nil {
			return nil, err
		}
		return apiSnapshot(*snap), nil
	}
	return pullKey(req.Repo, commit, req.Include, req.Exclude), fn, nil
}

// pullKey names a download for joining and for `sglangctl operation
// list`: repo@commit, plus the file selection when it is not the default.
func pullKey(repo, commit string, include, exclude []string) string {
	key := repo + "@" + commit
	norm := func(p []string) string {
		s := slices.Clone(p)
		slices.Sort(s)
		return strings.Join(slices.Compact(s), ",")
	}
	if include != nil {
		key += " include=" + norm(include)
	}
	if exclude != nil {
		key += " exclude=" + norm(exclude)
	}
	return key
}

func (b modelBackend) List(ctx context.Context) (*api.ModelList, error) {
	snaps, err := b.cache.List(ctx)
	if err != nil {
		return nil, err
	}
	out := &api.ModelList{Models: make([]api.ModelSnapshot, 0, len(snaps))}
	for _, s := range snaps {
		out.Models = append(out.Models, apiSnapshot(s))
	}
	for _, info := range b.ops.List() {
		if info.Kind != api.ModelPullKind || info.State != operation.Running {
			continue
		}
		op, err := b.ops.Get(info.ID)
		if err != nil {
			continue
		}
		for _, ev := range op.Snapshot() {
			if p, ok := ev.Value.(api.ModelPullEvent); ok && ev.Key == api.ModelPullOverallKey {
				out.Pulls = append(out.Pulls, p)
			}
		}
	}
	return out, nil
}

func (b modelBackend) Remove(ctx context.Context, repo, revision string) error {
	return b.cache.Remove(ctx, repo, revision)
}

func (b modelBackend) Verify(ctx context.Context, req api.ModelVerifyRequest) (*api.ModelVerifyReport, error) {
	rep, err := b.cache.Verify(ctx, req.Repo, req.Revision)
	if err != nil {
		return nil, err
	}
	out := &api.ModelVerifyReport{Repo: rep.Repo, Commit: rep.Commit, Path: rep.Path, Files: rep.Files, Bytes: rep.Bytes, OK: rep.OK()}
	for _, p := range rep.Problems {
		out.Problems = append(out.Problems, api.ModelProblem{Path: p.Path, Problem: p.Problem})
	}
	return out, nil
}

func pullEvent(p model.Progress) api.ModelPullEvent {
	return api.ModelPullEvent{Phase: string(p.Phase), Repo: p.Repo, Revision: p.Revision, Commit: p.Commit,
		Files: p.Files, FilesDone: p.FilesDone, TotalBytes: p.Total, CompletedBytes: p.Completed,
		DownloadedBytes: p.Downloaded, BytesPerSecond: p.Rate, ETASeconds: p.ETA.Seconds(), ElapsedSeconds: p.Elapsed.Seconds()}
}

func fileEvent(f model.FileProgress) api.ModelFileProgress {
	return api.ModelFileProgress{Path: f.Path, SizeBytes: f.Size, CompletedBytes: f.Completed,
		BytesPerSecond: f.Rate, ETASeconds: f.ETA.Seconds(), State: string(f.State), Retries: f.Retries}
}

func apiSnapshot(s model.Snapshot) api.ModelSnapshot {
	out := api.ModelSnapshot{Repo: s.Repo, Commit: s.Commit, Revisions: s.Revisions, Path: s.Path, Files: s.Files,
		SizeBytes: s.Size, Verified: s.Verified}
	if s.Verified {
		t := s.VerifiedAt
		out.VerifiedAt = &t
	}
	return out
}

// Thresholds for the model cache's disk: a 7B model in bf16 is ~15 GiB.
const (
	modelCacheWarnBytes = 50 << 30
	modelCacheFailBytes = 2 << 30
)

// checkModelCache is the doctor's "model_cache" check: the cache is
// writable with room for a model, and the endpoint answers (a short HEAD;
// unreachable is a warning, since cached models still work).
func (d *daemon) checkModelCache(ctx context.Context) api.Check {
	d.mu.RLock()
	cache := d.models
	d.mu.RUnlock()
	if cache == nil {
		return api.Check{Status: api.CheckFail, Message: "model cache not set up yet", Hint: "the daemon is still starting; retry"}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	res := cache.Check(ctx, true)
	details := map[string]string{"cache_dir": res.CacheDir, "endpoint": res.Endpoint, "free_bytes": fmt.Sprint(res.FreeBytes),
		"token": map[bool]string{true: "set", false: "unset"}[res.TokenSet]}
	if res.WriteErr != nil {
		return api.Check{Status: api.CheckFail, Message: fmt.Sprintf("model cache %s is not writable: %v", res.CacheDir, res.WriteErr),
			Hint: "give the sglangd user ownership of model.cache_dir (default <data_dir>/hf/hub)", Details: details}
	}
	c := api.Check{Status: api.CheckOK, Details: details,
		Message: fmt.Sprintf("%s writable, %s free; %s reachable", res.CacheDir, humanize.IBytes(uint64(res.FreeBytes)), res.Endpoint)}
	switch {
	case res.FreeBytes < modelCacheFailBytes:
		c.Status, c.Hint = api.CheckFail, "free space in model.cache_dir: model weights need tens of GB"
	case res.EndpointErr != nil:
		c.Status = api.CheckWarn
		c.Message = fmt.Sprintf("%s writable, %s free; %s unreachable: %v", res.CacheDir, humanize.IBytes(uint64(res.FreeBytes)), res.Endpoint, res.EndpointErr)
		c.Hint = "check the network and proxy, or set model.endpoint / HF_ENDPOINT to a reachable mirror (cached models still work)"
	case res.FreeBytes < modelCacheWarnBytes:
		c.Status, c.Hint = api.CheckWarn, "less than 50 GiB free in model.cache_dir: a 7B model needs ~15 GiB, a 70B one ~140 GiB"
	}
	return c
}
