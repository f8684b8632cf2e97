package docker

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sglangd/sglangd/internal/testutil/registrytest"
)

// TestReconcile_AfterAbruptStop kills a Manager (Close without stopping
// anything, as a crashed daemon leaves its containers) with servers
// running, and checks what a new Manager of the same instance does with
// them.
func TestReconcile_AfterAbruptStop(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{})
	ctx := context.Background()
	opts := testOptions(t)
	opts.Credentials = dockerConfigCreds(t, r)
	opts.StopGrace = time.Second
	logs := t.TempDir()
	m1 := newManager(t, opts)
	pullSim(t, m1, r)
	spec := func(session string, env map[string]string) ServerSpec {
		return ServerSpec{SessionID: session, Image: r.ref, Model: "/m", Env: env, LogPath: filepath.Join(logs, session+".log")}
	}
	active, err := m1.Run(ctx, spec("active", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m1.Run(ctx, spec("gone", nil)); err != nil {
		t.Fatal(err)
	}
	dead, err := m1.Start(ctx, spec("dead", map[string]string{"SGLANG_SIM_LOAD_ERROR": "torch.OutOfMemoryError: CUDA out of memory"}))
	if err != nil {
		t.Fatal(err)
	}
	<-dead.Exited()

	// Another daemon's server on the same engine must be left alone.
	otherOpts := testOptions(t)
	otherOpts.Credentials = opts.Credentials
	other := newManager(t, otherOpts)
	if _, err := other.Run(ctx, spec("other", nil)); err != nil {
		t.Fatal(err)
	}

	m1.Close() // the daemon dies; its containers do not

	m2 := newManager(t, opts)
	res, err := m2.Reconcile(ctx, SessionCheckFunc(func(id string) bool { return id == "active" || id == "dead" }))
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	got := map[string]string{}
	for _, x := range res {
		got[x.SessionID] = x.Action + "/" + x.State
		if x.Error != "" {
			t.Errorf("%s: %s", x.SessionID, x.Error)
		}
	}
	want := map[string]string{"active": "adopted/running", "gone": "removed/running", "dead": "removed/exited"}
	if len(got) != len(want) {
		t.Errorf("reconciled %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("session %s: %s, want %s", k, got[k], v)
		}
	}
	if left := instanceContainers(t, m2.Client(), opts.Instance); !slices.Equal(left, []string{active.Name + "(running)"}) {
		t.Errorf("engine has %v, want only the adopted %s", left, active.Name)
	}
	if left := instanceContainers(t, m2.Client(), otherOpts.Instance); len(left) != 1 {
		t.Errorf("the other instance's container was touched: %v", left)
	}

	srv, ok := m2.Get("active")
	if !ok || !srv.Adopted || srv.ID != active.ID || srv.URL != active.URL {
		t.Fatalf("adopted server = %+v, %v; want the running one at %s", srv, ok, active.URL)
	}
	resp, err := http.Get(srv.URL + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("adopted server /health: %v %v", resp, err)
	}
	resp.Body.Close()
	// The removed server's whole log was saved, complete.
	for _, s := range []string{"gone", "dead"} {
		b, err := os.ReadFile(filepath.Join(logs, s+".log"))
		if err != nil || !strings.Contains(string(b), "server_args=") {
			t.Errorf("%s log: %v\n%s", s, err, b)
		}
		if _, err := os.Stat(filepath.Join(logs, s+".log"+partialSuffix)); !os.IsNotExist(err) {
			t.Errorf("%s: partial log left: %v", s, err)
		}
	}

	if err := m2.Stop(ctx, srv); err != nil {
		t.Fatal(err)
	}
	if left := instanceContainers(t, m2.Client(), opts.Instance); len(left) != 0 {
		t.Errorf("leaked containers: %v", left)
	}
	b, err := os.ReadFile(active.LogPath)
	if err != nil || !strings.Contains(string(b), "server_args=") || !strings.Contains(string(b), "Shutting down") {
		t.Errorf("adopted server's log (rewritten from the start): %v\n%s", err, b)
	}
}

func TestKeepWarm_ReuseBySpec(t *testing.T) {
	t.Parallel()
	r := pushSimImage(t, "sglangd", registrytest.ImageOptions{})
	ctx := context.Background()
	opts := testOptions(t)
	opts.Credentials = dockerConfigCreds(t, r)
	opts.KeepWarm = true
	opts.StopGrace = time.Second
	m := newManager(t, opts)
	pullSim(t, m, r)
	spec := ServerSpec{SessionID: "one", Image: r.ref, Model: "/m", ExtraArgs: []string{"--enable-metrics"},
		SecretEnv: map[string]string{"HF_TOKEN": "a"}}
	first, err := m.Acquire(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, exited := first.ExitCode(); exited {
		t.Fatal("released server stopped despite keep-warm")
	}
	if _, ok := m.Get("one"); ok {
		t.Error("an idle warm server still belongs to its old session")
	}
	// Same spec (another session, another secret value): the same container.
	spec.SessionID, spec.SecretEnv = "two", map[string]string{"HF_TOKEN": "b"}
	second, err := m.Acquire(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || second.SessionID() != "two" {
		t.Fatalf("Acquire started %s for session %s, want the warm %s reused", second.Name, second.SessionID(), first.Name)
	}
	if err := m.Release(ctx, second); err != nil {
		t.Fatal(err)
	}
	// Another spec: the warm one goes (it may hold the GPUs), a new one runs.
	spec.SessionID, spec.ExtraArgs = "three", nil
	third, err := m.Acquire(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if third.ID == first.ID {
		t.Fatal("a server of another spec was reused")
	}
	if _, exited := first.ExitCode(); !exited {
		t.Error("the idle warm server of another spec was not stopped")
	}
	if left := instanceContainers(t, m.Client(), opts.Instance); len(left) != 1 {
		t.Errorf("engine has %v, want only session three's server", left)
	}
	if err := m.Stop(ctx, third); err != nil {
		t.Fatal(err)
	}
}
