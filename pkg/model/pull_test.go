package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/internal/hubtest"
)

func TestCache_Pull(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	c := e.cache()
	want := wantFiles(t, e.srv, testRepo)
	snap, reports, err := e.pull(c, PullRequest{Repo: testRepo}, want)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, e.opts.CacheDir, testRepo, e.commit, want)
	e.noToken()

	if snap.Commit != e.commit || snap.Files != len(want) || !snap.Verified || len(snap.Revisions) != 1 || snap.Revisions[0] != "main" {
		t.Errorf("snapshot = %+v, want commit %s, %d files, verified, revisions [main]", snap, e.commit, len(want))
	}
	var size int64
	for _, b := range want {
		size += int64(len(b))
	}
	if snap.Size != size {
		t.Errorf("snapshot size %d, want %d", snap.Size, size)
	}
	// Each selected file was fetched exactly once; excluded ones never.
	for p, b := range want {
		if got := e.srv.Stats(p).BytesServed; got != int64(len(b)) {
			t.Errorf("%s: server sent %d bytes, want %d", p, got, len(b))
		}
	}
	for _, p := range []string{"pytorch_model.bin", "original/consolidated.pth"} {
		if st := e.srv.Stats(p); st.Gets+st.Heads > 0 {
			t.Errorf("%s is excluded by default but was requested: %+v", p, st)
		}
	}
	// Big files went in ranged parts.
	if st := e.srv.Stats("model-00001-of-00002.safetensors"); st.Gets != 6 {
		t.Errorf("shard 1 took %d GETs (%v), want 6 parts", st.Gets, st.Ranges)
	}

	// Progress: ordered phases, the last report done and complete.
	if len(reports) < 2 {
		t.Fatalf("got %d progress reports", len(reports))
	}
	last := reports[len(reports)-1]
	if last.Phase != PhaseDone || last.Completed != size || last.Total != size || last.FilesDone != len(want) || last.Downloaded != size {
		t.Errorf("last report = %+v", last)
	}
	order := map[Phase]int{PhaseResolving: 0, PhaseListing: 1, PhaseDownloading: 2, PhaseDone: 3}
	for i := 1; i < len(reports); i++ {
		if order[reports[i].Phase] < order[reports[i-1].Phase] {
			t.Errorf("phase went back from %s to %s", reports[i-1].Phase, reports[i].Phase)
		}
		if reports[i].Completed < reports[i-1].Completed {
			t.Errorf("completed bytes went back: %d -> %d", reports[i-1].Completed, reports[i].Completed)
		}
	}
	sawFile := false
	for _, r := range reports {
		for _, f := range r.Active {
			if f.Path == "model-00001-of-00002.safetensors" && f.State == FileDone && f.Completed == f.Size {
				sawFile = true
			}
		}
	}
	if !sawFile {
		t.Error("no per-file report said shard 1 was done")
	}

	// A second pull downloads nothing.
	before := e.srv.Stats("model-00001-of-00002.safetensors")
	snap2, reports2, err := e.pull(c, PullRequest{Repo: testRepo, Revision: "main"}, want)
	if err != nil {
		t.Fatal(err)
	}
	if after := e.srv.Stats("model-00001-of-00002.safetensors"); after.Gets != before.Gets || after.Heads != before.Heads {
		t.Errorf("second pull requested the cached shard again: %+v -> %+v", before, after)
	}
	if l := reports2[len(reports2)-1]; l.Downloaded != 0 || l.Completed != size {
		t.Errorf("second pull last report = %+v, want nothing downloaded", l)
	}
	if !snap2.Verified {
		t.Error("cached snapshot lost its verified mark")
	}
}

func TestCache_Pull_layout(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	c := e.cache()
	if _, err := c.Pull(context.Background(), PullRequest{Repo: testRepo}, nil); err != nil {
		t.Fatal(err)
	}
	rd := newRepoDir(e.opts.CacheDir, testRepo)
	if filepath.Base(rd.dir) != "models--acme--tiny-llm" {
		t.Errorf("repo folder %s", rd.dir)
	}
	ref, err := os.ReadFile(rd.ref("main"))
	if err != nil || string(ref) != e.commit {
		t.Errorf("refs/main = %q, %v; want the commit with no newline", ref, err)
	}
	raw, err := os.ReadFile(rd.tree(e.commit))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(raw, []byte("{\n \"files\": {\n  \"config.json\": {\n   \"blob_id\": \"")) || bytes.HasSuffix(raw, []byte("\n")) {
		t.Errorf("trees json is not sorted with indent 1:\n%s", raw)
	}
	var doc struct {
		FormatVersion int                       `json:"format_version"`
		Files         map[string]map[string]any `json:"files"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.FormatVersion != 1 || len(doc.Files) != len(testFiles()) {
		t.Errorf("tree lists %d files (version %d), want the whole commit: %d", len(doc.Files), doc.FormatVersion, len(testFiles()))
	}
	shard := doc.Files["model-00001-of-00002.safetensors"]
	if shard["lfs_sha256"] != e.srv.Etag(testRepo, "model-00001-of-00002.safetensors") || shard["size"] != float64(5*testPart+1234) {
		t.Errorf("shard tree entry = %v", shard)
	}
	if _, ok := doc.Files["config.json"]["lfs_sha256"]; ok {
		t.Errorf("git-stored file has an lfs entry: %v", doc.Files["config.json"])
	}
	lock := filepath.Join(e.opts.CacheDir, ".locks", "models--acme--tiny-llm", e.srv.Etag(testRepo, "config.json")+".lock")
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("lock file: %v", err)
	}
	// Nothing but repos and .locks at the cache root.
	entries, _ := os.ReadDir(e.opts.CacheDir)
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != ".locks,models--acme--tiny-llm" {
		t.Errorf("cache root holds %v", names)
	}
	target, _ := os.Readlink(filepath.Join(rd.snapshot(e.commit), "nested", "dir", "generation_config.json"))
	if want := "../../../../blobs/" + e.srv.Etag(testRepo, "nested/dir/generation_config.json"); target != want {
		t.Errorf("nested link = %q, want %q", target, want)
	}
}

func TestCache_Pull_patternsAndRevision(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	c := e.cache()
	want := map[string][]byte{"pytorch_model.bin": e.srv.Content(testRepo, "pytorch_model.bin"),
		"config.json": e.srv.Content(testRepo, "config.json")}
	// A commit revision writes no ref; patterns replace the defaults.
	snap, _, err := e.pull(c, PullRequest{Repo: testRepo, Revision: e.commit, Include: []string{"*.bin", "config.*"}, Exclude: []string{}}, want)
	if err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, e.opts.CacheDir, testRepo, e.commit, want)
	if len(snap.Revisions) != 0 {
		t.Errorf("revisions = %v, want none for a commit pull", snap.Revisions)
	}
	_, err = c.Pull(context.Background(), PullRequest{Repo: testRepo, Include: []string{"*.gguf"}}, nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a pattern selecting nothing: err = %v, want invalid argument", err)
	}
}

func TestCache_Pull_faults(t *testing.T) {
	const shard1 = "model-00001-of-00002.safetensors"
	const small = "tokenizer.json"
	tests := []struct {
		name   string
		faults []hubtest.Fault
		opts   hubtest.Options
		check  func(t *testing.T, e *env, elapsed time.Duration)
	}{
		{name: "reset mid-body", faults: []hubtest.Fault{{Kind: hubtest.Reset, Path: shard1, AfterBytes: 10000, Times: 2}}},
		{name: "reset of a hub-served file", faults: []hubtest.Fault{{Kind: hubtest.Reset, Path: small, AfterBytes: 1000}}},
		{name: "500", faults: []hubtest.Fault{{Kind: hubtest.Status, Status: 500, Path: shard1, Times: 3}},
			check: func(t *testing.T, e *env, _ time.Duration) {
				if n := e.metricsRetries("http_500"); n != 3 {
					t.Errorf("retries{reason=http_500} = %v, want 3", n)
				}
			}},
		{name: "503", faults: []hubtest.Fault{{Kind: hubtest.Status, Status: 503, Path: shard1}}},
		{name: "429 with Retry-After", faults: []hubtest.Fault{{Kind: hubtest.Status, Status: 429, RetryAfter: "1", Path: shard1}},
			check: func(t *testing.T, e *env, elapsed time.Duration) {
				if elapsed < time.Second {
					t.Errorf("pull took %s; it should have waited the 1s Retry-After", elapsed)
				}
			}},
		{name: "429 with RateLimit", faults: []hubtest.Fault{{Kind: hubtest.Status, Status: 429, RateLimit: `"resolvers";r=0;t=0`, Target: hubtest.TargetResolve, Path: shard1}}},
		{name: "stall", faults: []hubtest.Fault{{Kind: hubtest.Stall, Path: shard1, AfterBytes: 5000}},
			check: func(t *testing.T, e *env, _ time.Duration) {
				found := false
				for _, l := range e.logs.All() {
					if strings.Contains(l.Message, "stalled") {
						found = true
					}
				}
				if !found {
					t.Error("no stall was logged")
				}
				if n := e.metricsRetries("stall"); n < 1 {
					t.Errorf("stall retries metric = %v", n)
				}
			}},
		{name: "stall before the first byte", faults: []hubtest.Fault{{Kind: hubtest.Stall, Path: shard1}}},
		{name: "truncated body", faults: []hubtest.Fault{{Kind: hubtest.Truncate, Path: shard1, AfterBytes: 30000}}},
		{name: "wrong bytes", faults: []hubtest.Fault{{Kind: hubtest.Corrupt, Path: shard1, AfterBytes: 777, MinOffset: 2 * testPart}},
			check: func(t *testing.T, e *env, _ time.Duration) {
				// The corrupt blob was discarded and fetched again whole.
				size := int64(5*testPart + 1234)
				if got := e.srv.Stats(shard1).BytesServed; got != 2*size {
					t.Errorf("server sent %d bytes of %s, want %d (discard and one full retry)", got, shard1, 2*size)
				}
			}},
		{name: "200 instead of 206", faults: []hubtest.Fault{{Kind: hubtest.IgnoreRange, Path: shard1, MinOffset: 1, Times: 2}}},
		{name: "200 instead of 206 at offset 0", faults: []hubtest.Fault{{Kind: hubtest.IgnoreRange, Path: shard1}},
			check: func(t *testing.T, e *env, _ time.Duration) {
				// The first part's answer is used; the rest of the body is dropped.
				if got := e.srv.Stats(shard1).BytesServed; got > 5*testPart+1234+4*testPart+1234 {
					t.Errorf("server sent %d bytes", got)
				}
			}},
		{name: "expired redirect", faults: []hubtest.Fault{{Kind: hubtest.Expire, Path: shard1, AfterBytes: 2 * testPart}},
			check: func(t *testing.T, e *env, _ time.Duration) {
				if h := e.srv.Stats(shard1).Heads; h < 2 {
					t.Errorf("%d resolve HEADs for %s; an expired URL must be resolved again", h, shard1)
				}
			}},
		{name: "API 503 and 429", faults: []hubtest.Fault{{Kind: hubtest.Status, Status: 503, Target: hubtest.TargetAPI},
			{Kind: hubtest.Status, Status: 429, RetryAfter: "0", Target: hubtest.TargetAPI}}},
		{name: "resolve 500", faults: []hubtest.Fault{{Kind: hubtest.Status, Status: 500, Target: hubtest.TargetResolve, Path: shard1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts)
			for _, f := range tt.faults {
				e.srv.Inject(f)
			}
			c := e.cache()
			want := wantFiles(t, e.srv, testRepo)
			start := time.Now()
			if _, _, err := e.pull(c, PullRequest{Repo: testRepo}, want); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			checkSnapshot(t, e.opts.CacheDir, testRepo, e.commit, want)
			if n := e.srv.PendingFaults(); n != 0 {
				t.Errorf("%d faults were never triggered", n)
			}
			e.noToken()
			if tt.check != nil {
				tt.check(t, e, elapsed)
			}
		})
	}
}

func TestCache_Pull_corruptTwice(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	const shard2 = "model-00002-of-00002.safetensors"
	e.srv.Inject(hubtest.Fault{Kind: hubtest.Corrupt, Path: shard2, AfterBytes: 10, Times: -1})
	c := e.cache()
	want := wantFiles(t, e.srv, testRepo)
	delete(want, shard2)
	_, _, err := e.pull(c, PullRequest{Repo: testRepo}, want)
	if !errors.Is(err, ErrIntegrity) || !errors.Is(err, errdefs.ErrDataLoss) {
		t.Fatalf("err = %v, want an integrity error", err)
	}
	rd := newRepoDir(e.opts.CacheDir, testRepo)
	etag := e.srv.Etag(testRepo, shard2)
	for _, p := range []string{rd.blob(etag), rd.blob(etag) + partSuffix, rd.blob(etag) + stateSuffix,
		filepath.Join(rd.snapshot(e.commit), shard2)} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after an integrity failure", p)
		}
	}
	if got := e.srv.Stats(shard2).BytesServed; got != 2*3*testPart {
		t.Errorf("server sent %d bytes of %s, want two full attempts", got, shard2)
	}
}

func TestCache_Pull_errors(t *testing.T) {
	srv, _ := newServer(t, hubtest.Options{Token: testToken},
		hubtest.Repo{ID: "acme/gated", Files: testFiles()[:1], Gated: true},
		hubtest.Repo{ID: "acme/private", Files: testFiles()[:1], Private: true},
		hubtest.Repo{ID: "acme/disabled", Files: testFiles()[:1], Disabled: true},
		hubtest.Repo{ID: "acme/open", Files: testFiles()[:1]},
	)
	tests := []struct {
		name, repo, rev, token string
		limited                bool
		sentinel, class        error
	}{
		{name: "gated anonymous", repo: "acme/gated", sentinel: ErrGated, class: errdefs.ErrUnauthenticated},
		{name: "gated not approved", repo: "acme/gated", token: testToken, sentinel: ErrGated, class: errdefs.ErrPermissionDenied},
		{name: "private anonymous", repo: "acme/private", sentinel: ErrRepoNotFound, class: errdefs.ErrNotFound},
		{name: "missing repo", repo: "acme/nope", token: testToken, sentinel: ErrRepoNotFound, class: errdefs.ErrNotFound},
		{name: "missing revision", repo: "acme/open", rev: "v9", sentinel: ErrRevisionNotFound, class: errdefs.ErrNotFound},
		{name: "bad token", repo: "acme/open", token: "hf_wrongSECRETtoken", sentinel: ErrBadToken, class: errdefs.ErrUnauthenticated},
		{name: "disabled", repo: "acme/disabled", sentinel: ErrDisabled, class: errdefs.ErrFailedPrecondition},
		{name: "rate limited", repo: "acme/open", limited: true, sentinel: ErrRateLimited, class: errdefs.ErrResourceExhausted},
		{name: "bad repo id", repo: "../etc", class: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.limited {
				srv.Inject(hubtest.Fault{Kind: hubtest.Status, Status: 429, RetryAfter: "0", Target: hubtest.TargetAPI, Times: 3})
				t.Cleanup(func() { _ = srv.PendingFaults() })
			}
			c, err := New(Options{CacheDir: t.TempDir(), Endpoint: srv.URL, Token: tt.token, Retries: 2,
				RetryBaseDelay: time.Millisecond, RetryMaxDelay: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Pull(context.Background(), PullRequest{Repo: tt.repo, Revision: tt.rev}, nil)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("err = %v, want %v", err, tt.sentinel)
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("err = %v, want class %v", err, tt.class)
			}
			var h interface{ Hint() string }
			if tt.sentinel != nil && (!errors.As(err, &h) || h.Hint() == "") {
				t.Errorf("err %v has no hint", err)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("error reveals the token: %v", err)
			}
		})
	}
}

func TestCache_Pull_pathTraversal(t *testing.T) {
	for _, bad := range []string{"../evil.json", "/abs.json", "a/../../evil.json", "sub/./x.json", `..\evil.json`, "C:/x.json", "a//b.json"} {
		t.Run(bad, func(t *testing.T) {
			files := append(testFiles()[:2], hubtest.File{Path: bad, Data: []byte(`{"pwned":true}`)})
			srv, _ := newServer(t, hubtest.Options{}, hubtest.Repo{ID: "evil/repo", Files: files})
			root := t.TempDir()
			cacheDir := filepath.Join(root, "a", "b", "hub")
			c, err := New(Options{CacheDir: cacheDir, Endpoint: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Pull(context.Background(), PullRequest{Repo: "evil/repo", Include: []string{"*"}}, nil)
			if !errors.Is(err, ErrUnsafePath) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Fatalf("err = %v, want an unsafe path error", err)
			}
			// Nothing was fetched and nothing written anywhere.
			for _, f := range files {
				if st := srv.Stats(f.Path); st.Gets+st.Heads > 0 {
					t.Errorf("%s was requested", f.Path)
				}
			}
			_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					t.Errorf("file written: %s", p)
				}
				return nil
			})
		})
	}
}

func TestCache_Pull_diskSpace(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	var asked string
	c := e.cache(func(o *Options) {
		o.FreeSpace = func(dir string) (int64, error) { asked = dir; return 10 << 20, nil }
	})
	_, err := c.Pull(context.Background(), PullRequest{Repo: testRepo}, nil)
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("err = %v, want not enough disk space", err)
	}
	if !strings.Contains(err.Error(), "free") {
		t.Errorf("error does not say how much is free: %v", err)
	}
	if !strings.HasPrefix(asked, e.opts.CacheDir) {
		t.Errorf("free space asked for %q, want the cache", asked)
	}
	for p := range wantFiles(t, e.srv, testRepo) {
		if st := e.srv.Stats(p); st.Gets > 0 {
			t.Errorf("%s was downloaded despite the space check", p)
		}
	}
	// Enough space (the files plus the margin) lets it through.
	c = e.cache(func(o *Options) {
		o.FreeSpace = func(string) (int64, error) { return 1 << 30, nil }
	})
	if _, err := c.Pull(context.Background(), PullRequest{Repo: testRepo}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestCache_Pull_resume(t *testing.T) {
	// Throttled so the cancel lands mid-file; each file is in several parts.
	e := newEnv(t, hubtest.Options{Throttle: 400 << 10})
	c := e.cache()
	want := wantFiles(t, e.srv, testRepo)
	const shard1 = "model-00001-of-00002.safetensors"
	ctx, cancel := context.WithCancel(context.Background())
	w := watch(t, e.opts.CacheDir, want)
	_, err := c.Pull(ctx, PullRequest{Repo: testRepo}, func(p Progress) {
		w.scan()
		for _, f := range p.Active {
			if f.Path == shard1 && f.Completed > f.Size/3 {
				cancel()
			}
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	rd := newRepoDir(e.opts.CacheDir, testRepo)
	etag := e.srv.Etag(testRepo, shard1)
	st, err := readState(rd.blob(etag) + stateSuffix)
	if err != nil {
		t.Fatalf("no resume state after cancel: %v", err)
	}
	var saved int64
	for _, p := range st.Parts {
		saved += p.Done
	}
	if saved == 0 || st.Etag != etag {
		t.Errorf("state = %+v, want progress recorded", st)
	}
	if _, err := os.Lstat(filepath.Join(rd.snapshot(e.commit), shard1)); err == nil {
		t.Error("the unfinished shard is visible in the snapshot")
	}
	w.check(t)

	e.srv.SetThrottle(0)
	c2 := e.cache()
	if _, _, err := e.pull(c2, PullRequest{Repo: testRepo}, want); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, e.opts.CacheDir, testRepo, e.commit, want)
	for p, b := range want {
		size := int64(len(b))
		if got := e.srv.Stats(p).BytesServed; got > size+testPart {
			t.Errorf("%s: %d bytes served over both runs, want at most size %d + one part %d", p, got, size, testPart)
		}
	}
}

func TestCache_Pull_staleState(t *testing.T) {
	e := newEnv(t, hubtest.Options{})
	c := e.cache()
	rd := newRepoDir(e.opts.CacheDir, testRepo)
	const shard2 = "model-00002-of-00002.safetensors"
	etag := e.srv.Etag(testRepo, shard2)
	// Garbage from an older download: wrong size in the state, junk data.
	if err := os.MkdirAll(rd.blobs(), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(rd.blob(etag)+partSuffix, bytes.Repeat([]byte{'x'}, 3*testPart), 0o644)
	os.WriteFile(rd.blob(etag)+stateSuffix, []byte(`{"etag":"`+etag+`","size":5,"parts":[{"off":0,"len":5,"done":5}]}`), 0o644)
	// And a blob Python left half-written under its own temporary name.
	os.WriteFile(rd.blob(etag)+".1a2b3c4d.incomplete", []byte("junk"), 0o644)
	want := wantFiles(t, e.srv, testRepo)
	if _, err := c.Pull(context.Background(), PullRequest{Repo: testRepo}, nil); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(rd.snapshot(e.commit), shard2))
	if !bytes.Equal(got, want[shard2]) {
		t.Error("a stale partial blob was reused")
	}
}

func TestCache_Pull_renamedRepo(t *testing.T) {
	srv, commits := newServer(t, hubtest.Options{}, hubtest.Repo{ID: "acme/new-name", RenamedFrom: "acme/old-name", Files: testFiles()})
	c, err := New(Options{CacheDir: t.TempDir(), Endpoint: srv.URL, PartSize: testPart})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.Pull(context.Background(), PullRequest{Repo: "acme/old-name", Include: []string{"*.safetensors"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Commit != commits[0] || snap.Files != 2 {
		t.Errorf("snapshot = %+v", snap)
	}
	got, _ := os.ReadFile(filepath.Join(snap.Path, "model-00002-of-00002.safetensors"))
	if !bytes.Equal(got, srv.Content("acme/new-name", "model-00002-of-00002.safetensors")) {
		t.Error("content differs after a relative redirect")
	}
}

func TestCache_Pull_mirrorRedirect(t *testing.T) {
	srv, commits := newServer(t, hubtest.Options{}, hubtest.Repo{ID: testRepo, Files: testFiles()})
	// A mirror that sends everything to the real Hub with an absolute
	// redirect and no X-Repo-Commit, as some do.
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("mirror request %s carries a token", r.URL)
		}
		http.Redirect(w, r, srv.URL+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	defer mirror.Close()
	c, err := New(Options{CacheDir: t.TempDir(), Endpoint: mirror.URL, PartSize: testPart})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.Pull(context.Background(), PullRequest{Repo: testRepo}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Commit != commits[0] || snap.Files != 6 {
		t.Errorf("snapshot = %+v", snap)
	}
}

func TestCache_Pull_twoProcesses(t *testing.T) {
	e := newEnv(t, hubtest.Options{Throttle: 2 << 20})
	want := wantFiles(t, e.srv, testRepo)
	// Two caches on one directory stand for two processes (two daemons,
	// or sglangd and Python): the blob locks make each blob download once.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		c := e.cache()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Pull(context.Background(), PullRequest{Repo: testRepo}, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	checkSnapshot(t, e.opts.CacheDir, testRepo, e.commit, want)
	for p, b := range want {
		if got := e.srv.Stats(p).BytesServed; got != int64(len(b)) {
			t.Errorf("%s served %d bytes, want %d once", p, got, len(b))
		}
	}
}

// TestCache_Pull_resumeTrust checks which recorded bytes a resume trusts:
// written-but-unsynced bytes only on the same boot, fsynced ones always.
func TestCache_Pull_resumeTrust(t *testing.T) {
	const shard2 = "model-00002-of-00002.safetensors" // three parts
	for _, tt := range []struct {
		name      string
		sameBoot  bool
		wantRange string
	}{
		{"same boot resumes from written", true, fmt.Sprintf("bytes=%d-%d", testPart+testPart/2, 2*testPart-1)},
		{"after a reboot only synced bytes count", false, fmt.Sprintf("bytes=%d-%d", testPart, 2*testPart-1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, hubtest.Options{})
			c := e.cache()
			want := e.srv.Content(testRepo, shard2)
			rd := newRepoDir(e.opts.CacheDir, testRepo)
			etag := e.srv.Etag(testRepo, shard2)
			if err := os.MkdirAll(rd.blobs(), 0o755); err != nil {
				t.Fatal(err)
			}
			// Part 0 complete and synced; part 1 half written, not synced.
			partial := make([]byte, len(want))
			copy(partial, want[:testPart+testPart/2])
			if err := os.WriteFile(rd.blob(etag)+partSuffix, partial, 0o644); err != nil {
				t.Fatal(err)
			}
			boot := c.bootID
			if !tt.sameBoot {
				boot = "another-boot"
			}
			st := partState{Etag: etag, Size: int64(len(want)), BootID: boot, Parts: []partRec{
				{Off: 0, Len: testPart, Done: testPart, Written: testPart},
				{Off: testPart, Len: testPart, Done: 0, Written: testPart / 2},
				{Off: 2 * testPart, Len: testPart},
			}}
			b, _ := json.Marshal(st)
			if err := os.WriteFile(rd.blob(etag)+stateSuffix, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Pull(context.Background(), PullRequest{Repo: testRepo, Include: []string{shard2}}, nil); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(filepath.Join(rd.snapshot(e.commit), shard2))
			if !bytes.Equal(got, want) {
				t.Fatal("content differs after resume")
			}
			ranges := e.srv.Stats(shard2).Ranges
			if len(ranges) != 2 || !slices.Contains(ranges, tt.wantRange) {
				t.Errorf("ranges asked = %v, want %s and the last part", ranges, tt.wantRange)
			}
		})
	}
}
