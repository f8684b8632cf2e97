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

	"github.com/sglangd/sglangd/internal/hubtest"
	"github.com/sglangd/sglangd/pkg/api"
)

// buildBinaries compiles sglangd and sglangctl once per test binary run.
var buildBinaries = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sglangd-bin-")
	if err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go tool is needed to build the daemon: %w", err)
	}
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator), "github.com/sglangd/sglangd/cmd/sglangd", "github.com/sglangd/sglangd/cmd/sglangctl")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return dir, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := buildBinaries(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// daemonProc is a real sglangd process.
type daemonProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	exited chan struct{}
}

type daemonEnv struct {
	t      *testing.T
	bin    string
	cfg    string
	socket string
	env    []string
	client *api.Client
}

func newDaemonEnv(t *testing.T, endpoint string, modelYAML string) *daemonEnv {
	t.Helper()
	bin, err := buildBinaries()
	if err != nil {
		t.Fatal(err)
	}
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
	return &daemonEnv{t: t, bin: bin, cfg: cfg, socket: socket, env: env, client: c}
}

const testHFToken = "hf_killtestSECRETtoken0123456789"

func (e *daemonEnv) start() *daemonProc {
	e.t.Helper()
	p := &daemonProc{cmd: exec.Command(filepath.Join(e.bin, "sglangd"), "--config", e.cfg), stderr: &bytes.Buffer{}, exited: make(chan struct{})}
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

func (e *daemonEnv) ctl(args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(e.bin, "sglangctl"), append([]string{"--host", "unix://" + e.socket}, args...)...)
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
	srv, err := hubtest.New(hubtest.Options{Token: testHFToken, Throttle: 1 << 20})
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
	// Kill once both shards are well under way but unfinished.
	deadline := time.Now().Add(60 * time.Second)
	for srv.Stats(big[0]).BytesServed < 2*part || srv.Stats(big[1]).BytesServed < 2*part {
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
	out, stderr, err := e.ctl("model", "pull", repo, "-o", "json")
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
		t.Logf("%s: size %d, served %d over both runs", f.Path, len(want), served)
	}
	if n := srv.AuthLeaks(); n != 0 {
		t.Errorf("token sent to the CDN %d times", n)
	}

	// The rest of the CLI against the same daemon.
	out, _, err = e.ctl("model", "list")
	if err != nil || !strings.Contains(out, repo) || !strings.Contains(out, "main") || !strings.Contains(out, "yes") {
		t.Errorf("model list: %v\n%s", err, out)
	}
	out, stderr, err = e.ctl("model", "verify", repo, "-o", "json")
	var rep api.ModelVerifyReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Files != 4 {
		t.Errorf("model verify: %v %+v\n%s%s", err, rep, out, stderr)
	}
	out, _, err = e.ctl("doctor", "-o", "json")
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
	if _, stderr, err = e.ctl("model", "rm", repo); err != nil {
		t.Fatalf("model rm: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, "models--acme--kill-test")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("repo still in the cache after rm: %v", err)
	}
	_, stderr, err = e.ctl("model", "rm", repo)
	if err == nil || !strings.Contains(stderr, "not in the cache") {
		t.Errorf("second rm: %v\n%s", err, stderr)
	}
}
