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
)

// fakeModels behaves like the daemon's backend: Pull reports progress,
// then returns the snapshot or an error.
type fakeModels struct {
	events  []api.ModelPullEvent
	pullErr error
	removed []string
}

func (f *fakeModels) Pull(ctx context.Context, req api.ModelPullRequest, fn func(api.ModelPullEvent)) (*api.ModelSnapshot, error) {
	for _, ev := range f.events {
		fn(ev)
	}
	if f.pullErr != nil {
		return nil, f.pullErr
	}
	return &api.ModelSnapshot{Repo: req.Repo, Commit: "c0ffee", Path: "/cache/snap", Files: 2, SizeBytes: 10}, nil
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
	fm := &fakeModels{events: []api.ModelPullEvent{
		{Phase: api.ModelPhaseResolving, Repo: "a/b"},
		{Phase: api.ModelPhaseDownloading, Repo: "a/b", Commit: "c0ffee", TotalBytes: 10, CompletedBytes: 4,
			Active: []api.ModelFileProgress{{Path: "w.safetensors", SizeBytes: 8, CompletedBytes: 2, State: api.ModelFileDownloading}}},
	}}
	c := newModelServer(t, fm)
	ctx := context.Background()

	var got []api.ModelPullEvent
	snap, err := c.PullModel(ctx, api.ModelPullRequest{Repo: "a/b"}, func(ev api.ModelPullEvent) { got = append(got, ev) })
	if err != nil {
		t.Fatal(err)
	}
	if snap.Commit != "c0ffee" || snap.Path != "/cache/snap" {
		t.Errorf("snapshot = %+v", snap)
	}
	if len(got) != 3 || got[1].Active[0].Path != "w.safetensors" || got[2].Phase != api.ModelPhaseDone || got[2].Snapshot == nil ||
		got[2].TotalBytes != 10 {
		t.Errorf("events = %+v", got)
	}

	// Before any event, an error keeps its HTTP status.
	fm.events, fm.pullErr = nil, fmt.Errorf("gated: %w", errdefs.ErrPermissionDenied)
	_, err = c.PullModel(ctx, api.ModelPullRequest{Repo: "a/b"}, nil)
	var apiErr *api.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("early error = %#v", err)
	}
	// After events, the error is the stream's last line.
	fm.events = []api.ModelPullEvent{{Phase: api.ModelPhaseDownloading, Repo: "a/b"}}
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
