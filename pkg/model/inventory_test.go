package model

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/internal/hubtest"
)

func TestCache_Verify(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	c := e.cache()
	ctx := context.Background()
	if _, err := c.Pull(ctx, PullRequest{Repo: testRepo}, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Verify(ctx, testRepo, "")
	if err != nil {
		t.Fatal(err)
	}
	want := wantFiles(t, e.srv, testRepo)
	var size int64
	for _, b := range want {
		size += int64(len(b))
	}
	if !rep.OK() || rep.Commit != e.commit || rep.Files != len(want) || rep.Bytes != size {
		t.Fatalf("report = %+v", rep)
	}

	// Flip one byte of a shard's blob in place (bit rot: same size).
	const shard2 = "model-00002-of-00002.safetensors"
	rd := newRepoDir(e.opts.CacheDir, testRepo)
	blob := rd.blob(e.srv.Etag(testRepo, shard2))
	f, err := os.OpenFile(blob, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{'!'}, 100)
	f.Close()
	// And remove a small file from the snapshot.
	os.Remove(filepath.Join(rd.snapshot(e.commit), "config.json"))

	rep, err = c.Verify(ctx, testRepo, "main")
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Problems) != 2 || rep.Problems[0].Path != "config.json" || rep.Problems[1].Path != shard2 ||
		!strings.Contains(rep.Problems[1].Problem, "hashes to") {
		t.Fatalf("problems = %+v, want config.json missing and %s corrupt", rep.Problems, shard2)
	}
	// The corrupt file is gone from the snapshot, so SGLang cannot read it.
	if _, err := os.Lstat(filepath.Join(rd.snapshot(e.commit), shard2)); err == nil {
		t.Error("corrupt file still linked")
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 1 || list[0].Verified {
		t.Errorf("list = %+v, %v; want one unverified snapshot", list, err)
	}
	// A pull repairs it; verify passes again.
	if _, err := c.Pull(ctx, PullRequest{Repo: testRepo}, nil); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, e.opts.CacheDir, testRepo, e.commit, want)
	if rep, err = c.Verify(ctx, testRepo, e.commit); err != nil || !rep.OK() {
		t.Fatalf("after re-pull: %+v, %v", rep, err)
	}
	if list, _ = c.List(ctx); !list[0].Verified {
		t.Error("snapshot not verified after a clean verify")
	}

	if _, err := c.Verify(ctx, "acme/absent", ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("verify of an absent repo: %v", err)
	}
	if _, err := c.Verify(ctx, testRepo, "v2"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("verify of an unknown revision: %v", err)
	}
}

func TestCache_List_Remove(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	other := []hubtest.File{{Path: "config.json", Data: []byte(`{"other":1}`)},
		{Path: "model.safetensors", Size: testPart + 7, Seed: 9, LFS: true}}
	oc, err := e.srv.AddRepo(hubtest.Repo{ID: "acme/other", Files: other})
	if err != nil {
		t.Fatal(err)
	}
	c := e.cache()
	ctx := context.Background()
	if list, err := c.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("empty cache lists %v, %v", list, err)
	}
	for _, r := range []string{testRepo, "acme/other"} {
		if _, err := c.Pull(ctx, PullRequest{Repo: r}, nil); err != nil {
			t.Fatal(err)
		}
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Repo != "acme/other" || list[0].Commit != oc || list[1].Repo != testRepo ||
		list[0].Size != int64(11+testPart+7) || !list[0].Verified || list[0].Files != 2 {
		t.Fatalf("list = %+v", list)
	}

	// Removing one commit drops its blobs and refs.
	if err := c.Remove(ctx, "acme/other", "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(newRepoDir(e.opts.CacheDir, "acme/other").dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("repo folder left after removing its only snapshot: %v", err)
	}
	if err := c.Remove(ctx, testRepo, ""); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(e.opts.CacheDir)
	for _, en := range entries {
		if en.Name() != ".locks" {
			t.Errorf("left in the cache: %s", en.Name())
		}
	}
	locks, _ := os.ReadDir(filepath.Join(e.opts.CacheDir, ".locks"))
	if len(locks) != 0 {
		t.Errorf("lock folders left: %v", locks)
	}
	if err := c.Remove(ctx, testRepo, ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("removing an absent repo: %v", err)
	}
}

func TestCache_Remove_keepsSharedBlobs(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	c := e.cache()
	ctx := context.Background()
	if _, err := c.Pull(ctx, PullRequest{Repo: testRepo}, nil); err != nil {
		t.Fatal(err)
	}
	// A second snapshot of the same repo that shares the config blob.
	rd := newRepoDir(e.opts.CacheDir, testRepo)
	second := strings.Repeat("b", 40)
	cfgEtag := e.srv.Etag(testRepo, "config.json")
	if err := linkSnapshot(rd.snapshot(second), "config.json", cfgEtag); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, testRepo, e.commit); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(rd.blob(cfgEtag)); err != nil {
		t.Errorf("shared blob removed: %v", err)
	}
	if _, err := os.Stat(rd.blob(e.srv.Etag(testRepo, "model-00002-of-00002.safetensors"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unshared blob kept: %v", err)
	}
	if _, err := os.Stat(rd.ref("main")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ref to the removed commit kept: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(rd.snapshot(second), "config.json"))
	if !bytes.Equal(got, e.srv.Content(testRepo, "config.json")) {
		t.Error("other snapshot broken")
	}
}

func TestCache_Check(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	c := e.cache()
	res := c.Check(context.Background(), true)
	if res.WriteErr != nil || res.EndpointErr != nil || !res.EndpointChecked || res.FreeBytes <= 0 || !res.TokenSet {
		t.Errorf("check = %+v", res)
	}
	e.srv.Close()
	if res := c.Check(context.Background(), true); res.EndpointErr == nil {
		t.Error("a closed endpoint passed the check")
	}
	ro := filepath.Join(t.TempDir(), "file")
	os.WriteFile(ro, nil, 0o644)
	bad := e.cache(func(o *Options) { o.CacheDir = filepath.Join(ro, "hub") })
	if res := bad.Check(context.Background(), false); res.WriteErr == nil || res.EndpointChecked {
		t.Errorf("check of an unusable dir = %+v", res)
	}
}

func TestCache_Remove_busy(t *testing.T) {
	e := newEnv(t, hubtest.Options{Throttle: 256 << 10})
	c := e.cache()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		_, err := c.Pull(ctx, PullRequest{Repo: testRepo}, func(p Progress) {
			if p.Completed > 0 {
				once.Do(func() { close(started) })
			}
		})
		errc <- err
	}()
	<-started
	if err := c.Remove(context.Background(), testRepo, ""); !errors.Is(err, ErrBusy) || !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("remove during a pull: %v", err)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("pull: %v", err)
	}
	if err := c.Remove(context.Background(), testRepo, ""); err != nil {
		t.Errorf("remove after the pull stopped: %v", err)
	}
}

func TestCache_Pull_pinnedCommit(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	c := e.cache()
	commit, err := c.Resolve(context.Background(), testRepo, "main")
	if err != nil || commit != e.commit {
		t.Fatalf("resolve = %s, %v", commit, err)
	}
	snap, err := c.Pull(context.Background(), PullRequest{Repo: testRepo, Revision: "main", Commit: commit, Include: []string{"config.json"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Revisions) != 1 || snap.Revisions[0] != "main" {
		t.Errorf("revisions = %v, want the ref written for the pinned pull", snap.Revisions)
	}
	// Offline, the ref written by the pull still resolves.
	e.srv.Close()
	if got, err := c.Resolve(context.Background(), testRepo, "main"); err != nil || got != commit {
		t.Errorf("offline resolve = %s, %v", got, err)
	}
	if snap, err := c.Pull(context.Background(), PullRequest{Repo: testRepo, Include: []string{"config.json"}}, nil); err != nil || snap.Commit != commit {
		t.Errorf("offline pull of a complete snapshot = %+v, %v", snap, err)
	}
}
