package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/config"
	"github.com/sglangd/sglangd/pkg/model"
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

// modelBackend serves /v1/models from the model package.
type modelBackend struct {
	jobs *model.Jobs
}

func (b modelBackend) Pull(ctx context.Context, req api.ModelPullRequest, fn func(api.ModelPullEvent)) (*api.ModelSnapshot, error) {
	snap, err := b.jobs.Pull(ctx, model.PullRequest{Repo: req.Repo, Revision: req.Revision, Include: req.Include, Exclude: req.Exclude},
		func(p model.Progress) { fn(pullEvent(p)) })
	if err != nil {
		return nil, err
	}
	s := apiSnapshot(*snap)
	return &s, nil
}

func (b modelBackend) List(ctx context.Context) (*api.ModelList, error) {
	snaps, err := b.jobs.Cache().List(ctx)
	if err != nil {
		return nil, err
	}
	out := &api.ModelList{Models: make([]api.ModelSnapshot, 0, len(snaps))}
	for _, s := range snaps {
		out.Models = append(out.Models, apiSnapshot(s))
	}
	for _, p := range b.jobs.Active() {
		out.Pulls = append(out.Pulls, pullEvent(p))
	}
	return out, nil
}

func (b modelBackend) Remove(ctx context.Context, repo, revision string) error {
	return b.jobs.Cache().Remove(ctx, repo, revision)
}

func (b modelBackend) Verify(ctx context.Context, req api.ModelVerifyRequest) (*api.ModelVerifyReport, error) {
	rep, err := b.jobs.Cache().Verify(ctx, req.Repo, req.Revision)
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
	ev := api.ModelPullEvent{Phase: string(p.Phase), Repo: p.Repo, Revision: p.Revision, Commit: p.Commit,
		Files: p.Files, FilesDone: p.FilesDone, TotalBytes: p.Total, CompletedBytes: p.Completed,
		DownloadedBytes: p.Downloaded, BytesPerSecond: p.Rate, ETASeconds: p.ETA.Seconds(), ElapsedSeconds: p.Elapsed.Seconds()}
	for _, f := range p.Active {
		ev.Active = append(ev.Active, api.ModelFileProgress{Path: f.Path, SizeBytes: f.Size, CompletedBytes: f.Completed,
			BytesPerSecond: f.Rate, ETASeconds: f.ETA.Seconds(), State: string(f.State), Retries: f.Retries})
	}
	return ev
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
	jobs := d.models
	d.mu.RUnlock()
	if jobs == nil {
		return api.Check{Status: api.CheckFail, Message: "model cache not set up yet", Hint: "the daemon is still starting; retry"}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	res := jobs.Cache().Check(ctx, true)
	details := map[string]string{"cache_dir": res.CacheDir, "endpoint": res.Endpoint, "free_bytes": fmt.Sprint(res.FreeBytes),
		"token": map[bool]string{true: "set", false: "unset"}[res.TokenSet]}
	if res.WriteErr != nil {
		return api.Check{Status: api.CheckFail, Message: fmt.Sprintf("model cache %s is not writable: %v", res.CacheDir, res.WriteErr),
			Hint: "give the sglangd user ownership of model.cache_dir (default <data_dir>/hf/hub)", Details: details}
	}
	c := api.Check{Status: api.CheckOK, Details: details,
		Message: fmt.Sprintf("%s writable, %s free; %s reachable", res.CacheDir, humanBytes(uint64(res.FreeBytes)), res.Endpoint)}
	switch {
	case res.FreeBytes < modelCacheFailBytes:
		c.Status, c.Hint = api.CheckFail, "free space in model.cache_dir: model weights need tens of GB"
	case res.EndpointErr != nil:
		c.Status = api.CheckWarn
		c.Message = fmt.Sprintf("%s writable, %s free; %s unreachable: %v", res.CacheDir, humanBytes(uint64(res.FreeBytes)), res.Endpoint, res.EndpointErr)
		c.Hint = "check the network and proxy, or set model.endpoint / HF_ENDPOINT to a reachable mirror (cached models still work)"
	case res.FreeBytes < modelCacheWarnBytes:
		c.Status, c.Hint = api.CheckWarn, "less than 50 GiB free in model.cache_dir: a 7B model needs ~15 GiB, a 70B one ~140 GiB"
	}
	return c
}
