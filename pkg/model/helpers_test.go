package model

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sglangd/sglangd/internal/hubtest"
)

const (
	testRepo  = "acme/tiny-llm"
	testToken = "hf_testtokenSECRET0123456789"
	testPart  = 64 << 10
)

// testFiles is a small model: two LFS shards of several parts each (one
// with an odd size), small git-stored files (one nested) and files the
// default patterns exclude.
func testFiles() []hubtest.File {
	return []hubtest.File{
		{Path: "config.json", Data: []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":64}`)},
		{Path: "tokenizer.json", Size: 5000, Seed: 1},
		{Path: "nested/dir/generation_config.json", Data: []byte(`{"temperature":0.7}`)},
		{Path: "model-00001-of-00002.safetensors", Size: 5*testPart + 1234, Seed: 2, LFS: true},
		{Path: "model-00002-of-00002.safetensors", Size: 3 * testPart, Seed: 3, LFS: true},
		{Path: "pytorch_model.bin", Size: 2 * testPart, Seed: 4, LFS: true},
		{Path: "original/consolidated.pth", Size: 1000, Seed: 5, LFS: true},
		{Path: "empty.txt", Data: []byte{}},
	}
}

// wantFiles are the files the default patterns select, with content.
func wantFiles(t *testing.T, srv *hubtest.Server, repo string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{"config.json", "tokenizer.json", "nested/dir/generation_config.json",
		"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "empty.txt"} {
		out[p] = srv.Content(repo, p)
	}
	return out
}

type env struct {
	t      *testing.T
	srv    *hubtest.Server
	commit string
	dir    string // temp root
	opts   Options
	logs   *observer.ObservedLogs
	// reg holds the metrics of the last cache made.
	reg *prometheus.Registry
}

func newServer(t *testing.T, o hubtest.Options, repos ...hubtest.Repo) (*hubtest.Server, []string) {
	t.Helper()
	srv, err := hubtest.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	var commits []string
	for _, r := range repos {
		c, err := srv.AddRepo(r)
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, c)
	}
	return srv, commits
}

// newEnv starts a fake Hub with the test repo (private, so the token is
// sent to the Hub and must never reach the CDN) and options tuned for
// fast tests: tiny parts, short stalls and backoffs.
func newEnv(t *testing.T, o hubtest.Options) *env {
	t.Helper()
	if o.Token == "" {
		o.Token = testToken
	}
	if o.PageSize == 0 {
		o.PageSize = 3 // exercise Link pagination
	}
	srv, commits := newServer(t, o, hubtest.Repo{ID: testRepo, Files: testFiles(), Private: true})
	dir := t.TempDir()
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core()))
	e := &env{t: t, srv: srv, commit: commits[0], dir: dir, logs: logs}
	e.opts = Options{
		Logger: log, CacheDir: filepath.Join(dir, "hub"), StateDir: filepath.Join(dir, "state"),
		Endpoint: srv.URL, Token: o.Token, PartSize: testPart, ConnectionsPerFile: 3, ConcurrentFiles: 2,
		MaxConnections: 5, StallTimeout: 300 * time.Millisecond, RetryBaseDelay: 5 * time.Millisecond,
		RetryMaxDelay: 40 * time.Millisecond, ProgressInterval: 10 * time.Millisecond,
	}
	return e
}

func (e *env) cache(mod ...func(*Options)) *Cache {
	e.t.Helper()
	o := e.opts
	e.reg = prometheus.NewRegistry()
	o.Registerer = e.reg
	for _, m := range mod {
		m(&o)
	}
	c, err := New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// noToken asserts that the token appears in no log line.
func (e *env) noToken() {
	e.t.Helper()
	for _, l := range e.logs.All() {
		if strings.Contains(l.Message, testToken) || strings.Contains(strings.Join(fieldsText(l), " "), testToken) {
			e.t.Errorf("token logged: %s %v", l.Message, l.Context)
		}
	}
	if n := e.srv.AuthLeaks(); n != 0 {
		e.t.Errorf("the token was sent to the CDN %d times", n)
	}
}

func fieldsText(l observer.LoggedEntry) []string {
	var out []string
	for k, v := range l.ContextMap() {
		out = append(out, k, strings.TrimSpace(strings.ReplaceAll(fmt.Sprint(v), "\n", " ")))
	}
	return out
}

// watcher polls the snapshots directory while a pull runs and records
// any file that is visible but not complete and correct, and any
// *.incomplete name anywhere in the cache.
type watcher struct {
	cache string
	want  map[string][]byte
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	problems []string
	checks   atomic.Int64
}

func watch(t *testing.T, cacheDir string, want map[string][]byte) *watcher {
	w := &watcher{cache: cacheDir, want: want, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			w.scan()
			select {
			case <-w.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.finish)
	return w
}

// scan checks every visible snapshot file once; safe to call from the
// progress callback too.
func (w *watcher) scan() {
	w.checks.Add(1)
	_ = filepath.WalkDir(w.cache, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if strings.HasSuffix(p, ".incomplete") {
			w.add("incomplete file visible: " + p)
		}
		rel, _ := filepath.Rel(w.cache, p)
		parts := strings.SplitN(filepath.ToSlash(rel), "/", 4)
		if len(parts) < 4 || parts[1] != "snapshots" || de.IsDir() {
			return nil
		}
		name := parts[3]
		if strings.HasPrefix(filepath.Base(name), ".sglangd-link-") {
			name = filepath.Join(filepath.Dir(name), strings.SplitN(strings.TrimPrefix(filepath.Base(name), ".sglangd-link-"), "-", 2)[1])
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return nil // vanished or dangling mid-scan: not readable, so not visible
		}
		want, ok := w.want[name]
		if !ok {
			w.add("unexpected file visible: " + name)
		} else if !bytes.Equal(got, want) {
			w.add("partial or corrupt file visible: " + name)
		}
		return nil
	})
}

func (w *watcher) add(p string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.problems) < 20 {
		w.problems = append(w.problems, p)
	}
}

func (w *watcher) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// check stops the watcher and fails on anything it saw.
func (w *watcher) check(t *testing.T) {
	t.Helper()
	w.finish()
	w.scan()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.problems {
		t.Error(p)
	}
	if w.checks.Load() < 2 {
		t.Errorf("watcher ran %d scans; expected it to watch the download", w.checks.Load())
	}
}

// checkSnapshot compares the snapshot with want, byte for byte, and
// checks the layout huggingface_hub expects.
func checkSnapshot(t *testing.T, cacheDir, repo, commit string, want map[string][]byte) {
	t.Helper()
	rd := newRepoDir(cacheDir, repo)
	dir := rd.snapshot(commit)
	files, err := snapshotFiles(dir)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if len(files) != len(want) {
		t.Errorf("snapshot has %d files %v, want %d", len(files), files, len(want))
	}
	for _, rel := range files {
		full := filepath.Join(dir, rel)
		target, err := os.Readlink(full)
		if err != nil {
			t.Errorf("%s: not a symlink: %v", rel, err)
			continue
		}
		if filepath.IsAbs(target) || !strings.HasPrefix(target, strings.Repeat("../", strings.Count(rel, "/")+2)+"blobs/") {
			t.Errorf("%s: link target %q is not ../../blobs/<etag> relative", rel, target)
		}
		got, err := os.ReadFile(full)
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if w, ok := want[rel]; !ok {
			t.Errorf("%s: not expected in the snapshot", rel)
		} else if !bytes.Equal(got, w) {
			t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(got), len(w))
		}
	}
	// Nothing partial is left in blobs/ after a successful pull.
	blobs, _ := os.ReadDir(rd.blobs())
	for _, b := range blobs {
		if strings.Contains(b.Name(), ".") {
			t.Errorf("leftover in blobs/: %s", b.Name())
		}
	}
}

// pull runs a pull with a watcher and the callback checking the
// snapshot at every report.
func (e *env) pull(c *Cache, req PullRequest, want map[string][]byte) (*Snapshot, []Progress, error) {
	e.t.Helper()
	w := watch(e.t, e.opts.CacheDir, want)
	var reports []Progress
	snap, err := c.Pull(context.Background(), req, func(p Progress) {
		w.scan()
		reports = append(reports, p)
	})
	w.check(e.t)
	return snap, reports, err
}

// metricsRetries returns the retry counter of the last cache for reason.
func (e *env) metricsRetries(reason string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sglangd_model_download_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
