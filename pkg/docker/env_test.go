package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"go.uber.org/zap/zaptest"

	"github.com/sglangd/sglangd/internal/testutil/registrytest"
)

// Tests here run against the real Docker engine. They skip only when no
// engine socket exists; an engine that is there but fails is a failure.

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// needEngine returns an engine client or skips when there is no engine.
func needEngine(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		host := os.Getenv("DOCKER_HOST")
		if host == "" {
			if _, serr := os.Stat("/var/run/docker.sock"); serr != nil {
				t.Skipf("no Docker engine (no DOCKER_HOST, no /var/run/docker.sock): %v", err)
			}
		}
		t.Fatalf("Docker engine present but not answering: %v", err)
	}
	return cli
}

// testOptions are this engine's working options: memlock is dropped
// because this engine (no CAP_SYS_RESOURCE) refuses memlock=-1 at start
// ("error setting rlimit type 8: operation not permitted"); the GPU recipe
// test puts it back, as it only inspects the created container.
func testOptions(t *testing.T) Options {
	id := randHex(4)
	return Options{
		Instance:     "test-" + id,
		NamePrefix:   "sglangd-test-" + id + "-",
		IPCHost:      true,
		ShmSize:      64 << 20,
		Ulimits:      map[string]int64{"stack": 67108864},
		Network:      NetworkBridge,
		StopGrace:    3 * time.Second,
		ReadyTimeout: 30 * time.Second,
		Logger:       zaptest.NewLogger(t),
	}
}

// newManager returns a Manager whose containers are all removed when the
// test ends, whatever happened.
func newManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	cli := needEngine(t)
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		m.Close()
		removeInstance(t, cli, opts.Instance)
	})
	return m
}

func removeInstance(t *testing.T, cli *client.Client, instance string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelInstance+"="+instance)})
	if err != nil {
		t.Errorf("cleanup list: %v", err)
		return
	}
	for _, c := range list.Items {
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("cleanup remove %s: %v", c.ID, err)
		}
	}
}

// instanceContainers lists the containers labelled with instance.
func instanceContainers(t *testing.T, cli *client.Client, instance string) []string {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelInstance+"="+instance)})
	if err != nil {
		t.Fatalf("list containers: %v", err)
	}
	var out []string
	for _, c := range list.Items {
		out = append(out, containerName(c)+"("+string(c.State)+")")
	}
	return out
}

// testRegistry is a loopback registry with basic auth holding the SGLang
// simulator image at the NGC image's path, ref =
// 127.0.0.1:PORT/nvidia/sglang:26.01-py3; every test runs its own registry,
// so the port keeps references apart.
type testRegistry struct {
	*registrytest.Registry
	ref string
}

// pushSimImage starts a registry for user, pushes the simulator image to
// it and removes the pulled image when the test ends.
func pushSimImage(t *testing.T, user string, o registrytest.ImageOptions) testRegistry {
	t.Helper()
	cli := needEngine(t)
	reg := registrytest.Start(t, user, "s3cret-"+randHex(4))
	ref := reg.PushSim(t, o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil &&
			!strings.Contains(err.Error(), "No such image") {
			t.Errorf("cleanup image %s: %v", ref, err)
		}
	})
	return testRegistry{reg, ref}
}

// dockerConfigCreds returns credentials that read r's user and password
// from a Docker client config written for the test.
func dockerConfigCreds(t *testing.T, r testRegistry) Credentials {
	return Credentials{UseDockerConfig: true, DockerConfigDir: registrytest.DockerConfig(t, r.Host, r.User, r.Password)}
}

// pullSim pulls the registry's image into the engine, for tests about
// running it.
func pullSim(t *testing.T, m *Manager, r testRegistry) {
	t.Helper()
	if _, err := m.Pull(context.Background(), r.ref, PullAlways, nil); err != nil {
		t.Fatalf("pull %s: %v", r.ref, err)
	}
}
