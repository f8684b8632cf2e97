package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/operation"
)

// fakeModels behaves like the daemon's backend: Pull checks the request,
// and its operation reports progress, then returns the snapshot or fails.
type fakeModels struct {
	resolveErr error
	events     []api.ModelPullEvent
	files      []api.ModelFileProgress
	pullErr    error
	removed    []string
}

func (f *fakeModels) Pull(ctx context.Context, req api.ModelPullRequest) (string, operation.Func, error) {
	if f.resolveErr != nil {
		return "", nil, f.resolveErr
	}
	events, files, pullErr := f.events, f.files, f.pullErr
	return req.Repo + "@c0ffee", func(ctx context.Context, report func(string, any)) (any, error) {
		for _, ev := range events {
			report(api.ModelPullOverallKey, ev)
		}
		for _, fp := range files {
			report(api.ModelPullFilePrefix+fp.Path, fp)
		}
		if pullErr != nil {
			return nil, pullErr
		}
		return api.ModelSnapshot{Repo: req.Repo, Commit: "c0ffee", Path: "/cache/snap", Files: 2, SizeBytes: 10}, nil
	}, nil
}

func (f *fakeModels) List(context.Context) (*api.ModelList, error) {
	return &api.ModelList{Models: []api.ModelSnapshot{{Repo: "a/b", Commit: "c", Verified: true}}}, nil
}

func (f *fakeModels) Remove(_ context.Context, repo, revision string) error {
	if repo == "a/missing" {
		return fmt.Errorf("model %s: %w", repo, errdefs.ErrNotFound)
	}
	f.removed = append(f.removed, repo+"@"+revision)
	return nil
}

func (f *fakeModels) Verify(_ context.Context, req api.ModelVerifyRequest) (*api.ModelVerifyReport, error) {
	return &api.ModelVerifyReport{Repo: req.Repo, Commit: "c", OK: req.Revision != "bad",
		Problems: map[bool][]api.ModelProblem{true: {{Path: "x", Problem: "corrupt"}}}[req.Revision == "bad"]}, nil
}

func newModelServer(t *testing.T, m Models) *api.Client {
	t.Helper()
	s, err := New(Options{Models: m})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler(false))
	t.Cleanup(hs.Close)
	c, err := api.NewClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServer_models(t *testing.T) {
	fm := &fakeModels{
		events: []api.ModelPullEvent{{Phase: api.ModelPhaseResolving, Repo: "a/b"},
			{Phase: api.ModelPhaseDownloading, Repo: "a/b", Commit: "c0ffee", TotalBytes: 10, CompletedBytes: 4}},
		files: []api.ModelFileProgress{{Path: "dir/w.safetensors", SizeBytes: 8, CompletedBytes: 2, State: api.ModelFileDownloading}},
	}
	c := newModelServer(t, fm)
	ctx := context.Background()

	var got []api.ModelPullUpdate
	snap, err := c.PullModel(ctx, api.ModelPullRequest{Repo: "a/b"}, func(u api.ModelPullUpdate) { got = append(got, u) })
	if err != nil {
		t.Fatal(err)
	}
	if snap.Commit != "c0ffee" || snap.Path != "/cache/snap" {
		t.Errorf("snapshot = %+v", snap)
	}
	// Attaching may start with the per-key snapshot: the latest overall
	// event, then the file.
	var overall []api.ModelPullEvent
	var files []api.ModelFileProgress
	for _, u := range got {
		if u.Op == "" {
			t.Errorf("update without an operation id: %+v", u)
		}
		if u.Overall != nil {
			overall = append(overall, *u.Overall)
		}
		if u.File != nil {
			files = append(files, *u.File)
		}
	}
	if len(overall) == 0 || overall[len(overall)-1].TotalBytes != 10 || len(files) != 1 || files[0].Path != "dir/w.safetensors" {
		t.Errorf("updates: overall %+v files %+v", overall, files)
	}

	// Before the operation starts, an error keeps its HTTP status.
	fm.resolveErr = fmt.Errorf("gated: %w", errdefs.ErrPermissionDenied)
	_, err = c.PullModel(ctx, api.ModelPullRequest{Repo: "a/b"}, nil)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("early error = %#v", err)
	}
	// A failing download ends the stream with its error.
	fm.resolveErr = nil
	fm.pullErr = fmt.Errorf("disk full: %w", errdefs.ErrResourceExhausted)
	_, err = c.PullModel(ctx, api.ModelPullRequest{Repo: "a/b"}, nil)
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("late error = %v", err)
	}
	if _, err := c.PullModel(ctx, api.ModelPullRequest{Repo: ""}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("empty repo: %v", err)
	}

	l, err := c.ListModels(ctx)
	if err != nil || len(l.Models) != 1 || !l.Models[0].Verified {
		t.Errorf("list = %+v, %v", l, err)
	}
	if err := c.RemoveModel(ctx, "org/name", "refs/pr/1"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveModel(ctx, "a/missing", ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("remove missing: %v", err)
	}
	if len(fm.removed) != 1 || fm.removed[0] != "org/name@refs/pr/1" {
		t.Errorf("removed = %v", fm.removed)
	}
	rep, err := c.VerifyModel(ctx, api.ModelVerifyRequest{Repo: "a/b", Revision: "bad"})
	if err != nil || rep.OK || len(rep.Problems) != 1 {
		t.Errorf("verify = %+v, %v", rep, err)
	}
}

func TestServer_models_absent(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler(false))
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/models without a backend: %d", resp.StatusCode)
	}
}
