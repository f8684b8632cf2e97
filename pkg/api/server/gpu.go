package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/pkg/api"
)

// GPUBackend answers the GPU routes. The daemon adapts its GPU manager
// (package gpu) to it, so this package stays free of NVML.
type GPUBackend interface {
	// GPUs returns the inventory and the driver gate, evaluated for an
	// image of CUDA version imageCUDA when it is not empty. Without a
	// driver it fails with the driver's error (a failed precondition).
	GPUs(ctx context.Context, imageCUDA string) (*api.GPUList, error)
}

// listGPUs serves GET /v1/gpus[?cuda=13.0].
func (s *Server) listGPUs(w http.ResponseWriter, r *http.Request) error {
	if s.opts.GPUs == nil {
		return fmt.Errorf("GET /v1/gpus: %w: this daemon has no GPU backend", errdefs.ErrNotImplemented)
	}
	l, err := s.opts.GPUs.GPUs(r.Context(), r.URL.Query().Get("cuda"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, l)
}
