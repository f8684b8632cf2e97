package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/internal/hubtest"
	"github.com/sglangd/sglangd/internal/testutil"
	"github.com/sglangd/sglangd/pkg/api"
)

// daemonProc is a real sglangd process.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan struct{}
}

type daemonEnv struct {
	t      *testing.T
	daemon string // binaries
	ctl    string
	cfg    string
	socket string
	env    []string
	client *api.Client
}

func newDaemonEnv(t *testing.T, endpoint string, modelYAML string) *daemonEnv {
	t.Helper()
	daemonBin := testutil.BuildBinary(t, "./cmd/sglangd")
	ctlBin := testutil.BuildBinary(t, "./cmd/sglangctl")
	dir := t.TempDir()
	socket := filepath.Join(dir, "sglangd.sock")
	cfg := filepath.Join(dir, "sglangd.yaml")
	yaml := fmt.Sprintf(`version: 1
data_dir: %s
log:
  level: debug
  format: json
api:
  socket: %s
  socket_mode: "0600"
gpu:
  mode: none
model:
%s
`, filepath.Join(dir, "data"), socket, modelYAML)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HF_") && !strings.HasPrefix(kv, "HUGGING") && !strings.HasPrefix(kv, "SGLANGD_") {
			env = append(env, kv)
		}
	}
	env = append(env, "HF_ENDPOINT="+endpoint, "HF_TOKEN="+testHFToken)
	c, err := api.NewClient("unix://" + socket)
	if err != nil {
		t.Fatal(err)
	}
	return &daemonEnv{t: t, daemon: daemonBin, ctl: ctlBin, cfg: cfg, socket: socket, env: env, client: c}
}

const testHFToken = "hf_killtestSECRETtoken0123456789"

func (e *daemonEnv) start() *daemonProc {
	e.t.Helper()
	p := &daemonProc{cmd: exec.Command(e.daemon, "--config", e.cfg), stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	p.cmd.Env = e.env
	p.cmd.Stderr = &lockedWriter{w: p.stderr}
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	e.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if e.t.Failed() {
			e.t.Logf("daemon log:\n%s", p.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := e.client.Ready(ctx)
		cancel()
		if err == nil && h.Status == "ready" {
			return p
		}
		select {
		case <-p.exited:
			e.t.Fatalf("sglangd exited at start:\n%s", p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("sglangd not ready after 30s: %v\n%s", err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *daemonEnv) run(args ...string) (string, string, error) {
	cmd := exec.Command(e.ctl, append([]string{"--host", "unix://" + e.socket}, args...)...)
	cmd.Env = e.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestDaemon_modelPull_killAndResume SIGKILLs a real sglangd mid-download,
// restarts it and pulls again: the download completes, and over both runs
// the Hub served each file at most once plus one part.
func TestDaemon_modelPull_killAndResume(t *testing.T) {
	const part = 1 << 20
	files := []hubtest.File{
		{Path: "config.json", Data: []byte(`{"architectures":["Qwen2ForCausalLM"]}`)},
		{Path: "tokenizer.json", Size: 100 << 10, Seed: 7},
		{Path: "model-00001-of-00002.safetensors", Size: 6*part + 4321, Seed: 8, LFS: true},
		{Path: "model-00002-of-00002.safetensors", Size: 5 * part, Seed: 9, LFS: true},
		{Path: "pytorch_model.bin", Size: part, Seed: 10, LFS: true},
	}
	srv, err := hubtest.New(hubtest.Options{Token: testHFToken, Throttle: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	const repo = "acme/kill-test"
	commit, err := srv.AddRepo(hubtest.Repo{ID: repo, Files: files, Gated: true, Approved: true})
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := filepath.Join(t.TempDir(), "hub")
	e := newDaemonEnv(t, srv.URL, fmt.Sprintf(`  cache_dir: %s
  part_size: 1MiB
  connections_per_file: 2
  concurrent_files: 2
  max_connections: 4
  stall_timeout: 2s
  retries: 3`, cacheDir))
	big := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}

	d := e.start()
	pullErr := make(chan error, 1)
	go func() {
		_, err := e.client.PullModel(context.Background(), api.ModelPullRequest{Repo: repo}, nil)
		pullErr <- err
	}()
	// Kill once both shards are well under way, in the middle of parts
	// (parts finish at whole MiB with two connections per file).
	deadline := time.Now().Add(60 * time.Second)
	for srv.Stats(big[0]).BytesServed < 2*part+part*3/4 || srv.Stats(big[1]).BytesServed < 2*part+part*3/4 {
		if time.Now().After(deadline) {
			t.Fatalf("download did not get going: %+v %+v", srv.Stats(big[0]), srv.Stats(big[1]))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	if err := <-pullErr; err == nil {
		t.Fatal("the pull succeeded although the daemon was killed")
	}
	for _, f := range big {
		if served, size := srv.Stats(f).BytesServed, int64(len(srv.Content(repo, f))); served >= size {
			t.Fatalf("%s was fully served (%d of %d bytes) before the kill; the test needs a slower server", f, served, size)
		}
	}
	// Nothing unfinished is visible where SGLang reads.
	snapDir := filepath.Join(cacheDir, "models--acme--kill-test", "snapshots", commit)
	for _, f := range big {
		if _, err := os.Lstat(filepath.Join(snapDir, f)); err == nil {
			t.Errorf("%s is in the snapshot before it finished", f)
		}
	}
	parts, _ := filepath.Glob(filepath.Join(cacheDir, "models--acme--kill-test", "blobs", "*.hfd.part.json"))
	if len(parts) == 0 {
		t.Error("no resume state survived the kill")
	}

	// Restart; this time pull with the CLI (plain progress: no terminal).
	srv.SetThrottle(0)
	e.start()
	out, stderr, err := e.run("model", "pull", repo, "-o", "json")
	if err != nil {
		t.Fatalf("sglangctl model pull: %v\n%s", err, stderr)
	}
	var snap api.ModelSnapshot
	if err := json.Unmarshal([]byte(out), &snap); err != nil {
		t.Fatalf("pull output %q: %v", out, err)
	}
	if snap.Commit != commit || snap.Path != snapDir || !snap.Verified || snap.Files != 4 {
		t.Errorf("snapshot = %+v", snap)
	}
	if !strings.Contains(stderr, "Downloading "+repo) || !strings.Contains(stderr, "Done:") {
		t.Errorf("plain progress missing from stderr:\n%s", stderr)
	}
	for _, f := range files {
		if f.Path == "pytorch_model.bin" {
			continue
		}
		want := srv.Content(repo, f.Path)
		got, err := os.ReadFile(filepath.Join(snapDir, f.Path))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: content differs (%d bytes, want %d): %v", f.Path, len(got), len(want), err)
		}
		served := srv.Stats(f.Path).BytesServed
		if limit := int64(len(want)) + part; served > limit {
			t.Errorf("%s: %d bytes served over both runs, want at most size %d + one part", f.Path, served, len(want))
		}
		t.Logf("%s: size %d, served %d over both runs, ranges %v", f.Path, len(want), served, srv.Stats(f.Path).Ranges)
	}
	if n := srv.AuthLeaks(); n != 0 {
		t.Errorf("token sent to the CDN %d times", n)
	}

	// The rest of the CLI against the same daemon.
	out, _, err = e.run("model", "list")
	if err != nil || !strings.Contains(out, repo) || !strings.Contains(out, "main") || !strings.Contains(out, "yes") {
		t.Errorf("model list: %v\n%s", err, out)
	}
	out, stderr, err = e.run("model", "verify", repo, "-o", "json")
	var rep api.ModelVerifyReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Files != 4 {
		t.Errorf("model verify: %v %+v\n%s%s", err, rep, out, stderr)
	}
	out, _, err = e.run("doctor", "-o", "json")
	var doc api.DoctorReport
	if json.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("doctor output: %v\n%s", err, out)
	}
	found := false
	for _, c := range doc.Checks {
		if c.Name == "model_cache" {
			found = true
			if c.Status == api.CheckFail || c.Details["endpoint"] != srv.URL || c.Details["token"] != "set" {
				t.Errorf("model_cache check = %+v", c)
			}
		}
	}
	if !found {
		t.Error("doctor has no model_cache check")
	}
	if _, stderr, err = e.run("model", "rm", repo); err != nil {
		t.Fatalf("model rm: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, "models--acme--kill-test")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("repo still in the cache after rm: %v", err)
	}
	_, stderr, err = e.run("model", "rm", repo)
	if err == nil || !strings.Contains(stderr, "not in the cache") {
		t.Errorf("second rm: %v\n%s", err, stderr)
	}
}

// TestModelPull_detachAndJoin runs the daemon in process: a client that
// disconnects leaves the download running, later clients join the same
// download (one transfer), and the repo cannot be removed meanwhile.
func TestModelPull_detachAndJoin(t *testing.T) {
	files := []hubtest.File{
		{Path: "config.json", Data: []byte(`{"architectures":["Qwen2ForCausalLM"]}`)},
		{Path: "model.safetensors", Size: 3 << 20, Seed: 3, LFS: true},
	}
	srv, err := hubtest.New(hubtest.Options{Throttle: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close) // after the daemon stops
	const repo = "acme/join-test"
	commit, err := srv.AddRepo(hubtest.Repo{ID: repo, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.GPU.Mode = "none"
	cfg.Model.Endpoint = srv.URL
	cfg.Model.PartSize = 1 << 20
	cfg.Model.ConnectionsPerFile = 2
	c, ctx := startInProcess(t, cfg)

	// The first client leaves as soon as bytes flow.
	first, leave := context.WithCancel(ctx)
	var opID string
	_, err = c.PullModel(first, api.ModelPullRequest{Repo: repo}, func(u api.ModelPullUpdate) {
		opID = u.Op
		if u.Overall != nil && u.Overall.CompletedBytes > 0 {
			leave()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("first client: %v", err)
	}
	op, err := c.Operation(ctx, opID)
	if err != nil || op.State != api.OperationRunning || op.Kind != api.ModelPullKind || op.Key != repo+"@"+commit {
		t.Fatalf("operation after the client left = %+v, %v", op, err)
	}
	l, err := c.ListModels(ctx)
	if err != nil || len(l.Pulls) != 1 || l.Pulls[0].Repo != repo {
		t.Errorf("list during the pull = %+v, %v", l, err)
	}
	if err := c.RemoveModel(ctx, repo, ""); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("remove during the pull: %v", err)
	}

	// Two more clients join the running download.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var firstUpdate *api.ModelPullUpdate
			snap, err := c.PullModel(ctx, api.ModelPullRequest{Repo: repo, Revision: "main"}, func(u api.ModelPullUpdate) {
				if firstUpdate == nil {
					firstUpdate = &u
				}
			})
			if err != nil || snap.Commit != commit || !snap.Verified {
				t.Errorf("joined pull: %+v, %v", snap, err)
				return
			}
			if firstUpdate == nil || firstUpdate.Op != opID {
				t.Errorf("joined a different operation: %+v, want %s", firstUpdate, opID)
			}
		}()
	}
	wg.Wait()
	for _, f := range files {
		want := srv.Content(repo, f.Path)
		if got := srv.Stats(f.Path).BytesServed; got != int64(len(want)) {
			t.Errorf("%s: %d bytes served for three clients, want one download of %d", f.Path, got, len(want))
		}
		got, err := os.ReadFile(filepath.Join(cfg.DataDir, "hf", "hub", "models--acme--join-test", "snapshots", commit, f.Path))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: snapshot content differs: %v", f.Path, err)
		}
	}
}
