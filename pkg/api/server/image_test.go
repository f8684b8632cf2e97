package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/api/server"
)

// stubImages plays the Docker backend: it replays progress events and
// returns an image or an error.
type stubImages struct {
	mu       sync.Mutex
	events   []api.ImagePullEvent
	err      error
	policies []string
}

func (s *stubImages) ResolveImage(ref string) (string, error) {
	if ref == "" {
		return "nvcr.io/nvidia/sglang:26.01-py3", nil
	}
	if strings.Contains(ref, " ") {
		return "", fmt.Errorf("image reference %q: %w", ref, errdefs.ErrInvalidArgument)
	}
	return ref, nil
}

func (s *stubImages) PullImage(_ context.Context, ref, policy string, report func(api.ImagePullEvent)) (*api.Image, error) {
	s.mu.Lock()
	s.policies = append(s.policies, policy)
	s.mu.Unlock()
	for _, ev := range s.events {
		report(ev)
	}
	if s.err != nil {
		return nil, s.err
	}
	return &api.Image{Ref: ref, ID: "sha256:id", Digest: "sha256:d", CUDAVersion: "13.0.2", Pulled: true}, nil
}

func (s *stubImages) Images(context.Context) (*api.ImageList, error) {
	return &api.ImageList{Configured: "nvcr.io/nvidia/sglang:26.01-py3", Present: true,
		Images: []api.Image{{Ref: "nvcr.io/nvidia/sglang:26.01-py3", Digest: "sha256:d"}}}, nil
}

type hintedPull struct{ error }

func (hintedPull) Hint() string    { return "set NGC_API_KEY" }
func (h hintedPull) Unwrap() error { return h.error }

func TestPullImage(t *testing.T) {
	ctx := context.Background()
	events := []api.ImagePullEvent{
		{Status: "Pulling from nvidia/sglang"},
		{Layer: "aaa", Status: "Pulling fs layer"},
		{Layer: "aaa", Status: "Downloading", Current: 10, Total: 100},
		{Layer: "aaa", Status: "Pull complete"},
	}
	b := &stubImages{events: events}
	c := newTestClient(t, server.Options{Images: b})
	var got []api.ImagePullEvent
	img, err := c.PullImage(ctx, api.ImagePullRequest{}, func(ev api.ImagePullEvent) error {
		got = append(got, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if img.Ref != "nvcr.io/nvidia/sglang:26.01-py3" || img.Digest != "sha256:d" || !img.Pulled {
		t.Errorf("image %+v: want the configured image, pulled", img)
	}
	// A fast pull may reach the watcher as a snapshot: at least the last
	// event of each layer arrives, in order.
	if len(got) == 0 || got[len(got)-1] != events[len(events)-1] {
		t.Errorf("events %+v, want to end with %+v", got, events[len(events)-1])
	}
	if b.policies[0] != api.PullAlways {
		t.Errorf("default policy %q, want always for an explicit pull", b.policies[0])
	}

	if _, err := c.PullImage(ctx, api.ImagePullRequest{Policy: "sometimes"}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad policy: %v", err)
	}
	if _, err := c.PullImage(ctx, api.ImagePullRequest{Ref: "bad ref"}, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad ref: %v", err)
	}

	// A failed pull keeps its class and hint across the wire.
	b2 := &stubImages{events: events[:2], err: hintedPull{fmt.Errorf("pull x: registry refused the credentials: %w", errdefs.ErrUnauthenticated)}}
	c2 := newTestClient(t, server.Options{Images: b2})
	_, err = c2.PullImage(ctx, api.ImagePullRequest{Ref: "nvcr.io/nvidia/sglang:26.01-py3", Policy: api.PullIfMissing}, nil)
	if !errors.Is(err, errdefs.ErrUnauthenticated) || api.HintOf(err) != "set NGC_API_KEY" {
		t.Errorf("failed pull: %v (hint %q)", err, api.HintOf(err))
	}

	l, err := c.Images(ctx)
	if err != nil || !l.Present || len(l.Images) != 1 {
		t.Errorf("Images: %+v %v", l, err)
	}
	if _, err := newTestClient(t, server.Options{}).Images(ctx); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("no backend: %v", err)
	}
}
