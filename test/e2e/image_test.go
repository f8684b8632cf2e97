package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/sglangd/sglangd/internal/sglangsim/simimage"
	"github.com/sglangd/sglangd/internal/testutil/registrytest"
	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/docker"
)

// dockerOrSkip returns an engine client; it skips only where no engine
// socket exists at all.
func dockerOrSkip(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		if _, serr := os.Stat("/var/run/docker.sock"); serr != nil && os.Getenv("DOCKER_HOST") == "" {
			t.Skipf("no Docker engine: %v", err)
		}
		t.Fatalf("Docker engine present but not answering: %v", err)
	}
	return cli
}

// simImage pushes the SGLang simulator image to a loopback registry with
// basic auth as 127.0.0.1:PORT/nvidia/sglang:26.01-py3 (with a random
// payload layer, so the pull shows progress), points DOCKER_CONFIG (read by
// the daemon started afterwards) at credentials for it, and removes the
// pulled image at the end.
func simImage(t *testing.T, cli *client.Client) string {
	t.Helper()
	reg := registrytest.Start(t, "sglangd", "e2e-secret")
	ref := reg.PushSim(t, registrytest.ImageOptions{PayloadBytes: 1 << 20})
	t.Setenv("DOCKER_CONFIG", registrytest.DockerConfig(t, reg.Host, reg.User, reg.Password))
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), ref, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	return ref
}

func randSuffix() string { return strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "") }

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "sglangd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImagePullThroughDaemon(t *testing.T) {
	cli := dockerOrSkip(t)
	ref := simImage(t, cli)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "version: 1\ndocker:\n  image: "+ref+"\n")
	d := startDaemon(t, dir, "--config", cfg)
	host := "--host=unix://" + d.sock

	// Not a terminal: plain progress lines on stderr, the table on stdout.
	out, stderr, code := ctl(t, nil, host, "image", "pull")
	if code != 0 {
		t.Fatalf("image pull exit %d:\n%s\n%s", code, stderr, d.log)
	}
	if !strings.Contains(stderr, ": Pull complete") || !strings.Contains(stderr, "Downloading") || !strings.Contains(stderr, "Digest: sha256:") {
		t.Errorf("progress lines:\n%s", stderr)
	}
	if !strings.Contains(out, ref) || !strings.Contains(out, simimage.DefaultCUDAVersion) || !strings.Contains(out, "docker_config") {
		t.Errorf("result table:\n%s", out)
	}

	out, stderr, code = ctl(t, nil, host, "image", "pull", "--policy", "if-missing", "-o", "json", ref)
	if code != 0 {
		t.Fatalf("second pull exit %d: %s", code, stderr)
	}
	var img api.Image
	if err := json.Unmarshal([]byte(out), &img); err != nil {
		t.Fatalf("image pull -o json: %v\n%s", err, out)
	}
	if img.Pulled || !strings.HasPrefix(img.Digest, "sha256:") || img.CUDAVersion != simimage.DefaultCUDAVersion {
		t.Errorf("if-missing on a present image: %+v", img)
	}

	out, _, code = ctl(t, nil, host, "image", "list", "-o", "json")
	var l api.ImageList
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || !l.Present || l.Configured != ref {
		t.Errorf("image list: %d %s", code, out)
	}

	_, stderr, code = ctl(t, nil, host, "image", "pull", strings.Replace(ref, ":26.01-py3", ":missing", 1))
	if code != 1 || !strings.Contains(stderr, "image not found") || !strings.Contains(stderr, "Hint: check docker.image") {
		t.Errorf("unknown tag: exit %d\n%s", code, stderr)
	}

	out, _, _ = ctl(t, nil, host, "doctor", "-o", "json")
	var rep api.DoctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor: %v\n%s", err, out)
	}
	checks := map[string]api.Check{}
	for _, c := range rep.Checks {
		checks[c.Name] = c
	}
	if c := checks["docker"]; c.Status != api.CheckOK || c.Details["api_version"] == "" || !strings.Contains(c.Message, "gpu.mode none") {
		t.Errorf("docker check %+v", c)
	}
	if c := checks["registry_credentials"]; c.Status != api.CheckOK || c.Details["source"] != docker.CredentialsDockerConfig {
		t.Errorf("registry_credentials check %+v", c)
	}
}

// TestDaemonKilledWithServerRunning: a server container labelled for this
// daemon runs when the daemon is SIGKILLed; the next start reconciles it.
// Its session is not active (no session survives a restart yet), so it is
// stopped, its log saved, and removed.
func TestDaemonKilledWithServerRunning(t *testing.T) {
	cli := dockerOrSkip(t)
	ref := simImage(t, cli)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, "version: 1\ndocker:\n  image: "+ref+"\n  stop_grace: 2s\n")
	d := startDaemon(t, dir, "--config", cfg)
	host := "--host=unix://" + d.sock
	out, stderr, code := ctl(t, nil, host, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("version: %s", stderr)
	}
	var v struct {
		Daemon api.VersionResponse `json:"daemon"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := ctl(t, nil, host, "image", "pull"); code != 0 {
		t.Fatalf("pull: %s", stderr)
	}

	// The container as the daemon's session runner starts it: same
	// instance label, stable name.
	m, err := docker.New(docker.Options{Instance: v.Daemon.DaemonID, Ulimits: map[string]int64{"stack": 67108864}, StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	t.Cleanup(func() {
		list, _ := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
			Filters: make(client.Filters).Add("label", docker.LabelInstance+"="+v.Daemon.DaemonID)})
		for _, c := range list.Items {
			_, _ = cli.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
		}
	})
	logPath := filepath.Join(dir, "sessions", "s1", "server.log")
	srv, err := m.Run(context.Background(), docker.ServerSpec{SessionID: "s1-" + randSuffix(), Image: ref, Model: "/m", LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}

	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err = <-d.done
	d.done <- err

	d2 := startDaemon(t, dir, "--config", cfg)
	list, err := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", docker.LabelInstance+"="+v.Daemon.DaemonID)})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("containers left after restart: %d %v", len(list.Items), err)
	}
	if !strings.Contains(d2.log.String(), "reconcile: leftover server container") || !strings.Contains(d2.log.String(), srv.Name) {
		t.Errorf("restart did not log the reconcile of %s:\n%s", srv.Name, d2.log)
	}
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), "server_args=") {
		t.Errorf("server log not saved: %v", err)
	}
}
