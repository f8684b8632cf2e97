package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/pkg/api"
)

// ImageBackend answers the image routes. The daemon adapts its Docker
// manager (package docker) to it, so this package stays free of the
// Docker client.
type ImageBackend interface {
	// ResolveImage validates ref and returns its normalised form (the
	// operation's key); "" means the configured image.
	ResolveImage(ref string) (string, error)
	// PullImage pulls ref (already resolved) with policy, reporting
	// progress through report.
	PullImage(ctx context.Context, ref, policy string, report func(api.ImagePullEvent)) (*api.Image, error)
	// Images lists the configured image's repository.
	Images(ctx context.Context) (*api.ImageList, error)
}

func (s *Server) imageRoutes() {
	s.handle("POST /v1/images/pull", s.pullImage)
	s.handle("GET /v1/images", s.listImages)
}

// pullImage serves POST /v1/images/pull: an operation keyed by the image,
// so concurrent pulls of one image share a download and a client can
// disconnect and watch it again.
func (s *Server) pullImage(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Images == nil {
		return fmt.Errorf("POST /v1/images/pull: %w: this daemon has no Docker backend", errdefs.ErrNotImplemented)
	}
	var req api.ImagePullRequest
	if r.ContentLength != 0 {
		if err := DecodeJSON(r, &req); err != nil {
			return err
		}
	}
	switch req.Policy {
	case "":
		req.Policy = api.PullAlways
	case api.PullAlways, api.PullIfMissing, api.PullNever:
	default:
		return fmt.Errorf("policy %q: %w: expected always, if-missing or never", req.Policy, errdefs.ErrInvalidArgument)
	}
	ref, err := s.opts.Images.ResolveImage(req.Ref)
	if err != nil {
		return err
	}
	return s.StartOperation(w, r, api.OperationImagePull, ref, func(ctx context.Context, report func(string, any)) (any, error) {
		return s.opts.Images.PullImage(ctx, ref, req.Policy, func(ev api.ImagePullEvent) { report(ev.Layer, ev) })
	})
}

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Images == nil {
		return fmt.Errorf("GET /v1/images: %w: this daemon has no Docker backend", errdefs.ErrNotImplemented)
	}
	l, err := s.opts.Images.Images(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, l)
}
