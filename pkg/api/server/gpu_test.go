package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/api/server"
)

// stubGPUs answers with a fixed list or error and records the CUDA
// version it was asked about.
type stubGPUs struct {
	list  *api.GPUList
	err   error
	asked []string
}

func (s *stubGPUs) GPUs(_ context.Context, imageCUDA string) (*api.GPUList, error) {
	s.asked = append(s.asked, imageCUDA)
	return s.list, s.err
}

// hinted mimics how package gpu attaches hints to its errors.
type hinted struct{ error }

func (hinted) Hint() string    { return "install the NVIDIA driver" }
func (h hinted) Unwrap() error { return h.error }

func TestListGPUs(t *testing.T) {
	ctx := context.Background()
	b := &stubGPUs{list: &api.GPUList{Mode: "nvml", Driver: api.GPUDriver{Version: "580.159.04", CUDAVersion: "13.0"},
		Gate: api.GPUGate{OK: true, MinDriver: "570", Required: "580.65.06", ImageCUDA: "13.0"},
		GPUs: []api.GPU{{Index: 0, UUID: "GPU-1", Name: "NVIDIA H200", MemoryTotalBytes: 150754820096, Processes: []api.GPUProcess{}}}}}
	c := newTestClient(t, server.Options{GPUs: b})

	l, err := c.GPUs(ctx, "13.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if l.Driver.Version != "580.159.04" || len(l.GPUs) != 1 || l.GPUs[0].MemoryTotalBytes != 150754820096 || l.Gate.Required != "580.65.06" {
		t.Errorf("GPUs = %+v", l)
	}
	if _, err := c.GPUs(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if len(b.asked) != 2 || b.asked[0] != "13.0.2" || b.asked[1] != "" {
		t.Errorf("backend asked for CUDA %q; want [13.0.2 \"\"]", b.asked)
	}
}

func TestListGPUs_Errors(t *testing.T) {
	ctx := context.Background()
	noDriver := hinted{fmt.Errorf("NVIDIA driver not found (libnvidia-ml.so.1): libnvidia-ml.so.1: cannot open shared object file: No such file or directory: %w", errdefs.ErrFailedPrecondition)}
	c := newTestClient(t, server.Options{GPUs: &stubGPUs{err: noDriver}})
	_, err := c.GPUs(ctx, "")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusPreconditionFailed || ae.Code != api.CodeFailedPrecondition ||
		ae.Hint != "install the NVIDIA driver" || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("no driver: %#v", err)
	}
	if ae.Message != noDriver.Error() {
		t.Errorf("message = %q", ae.Message)
	}

	c = newTestClient(t, server.Options{})
	if _, err := c.GPUs(ctx, ""); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("no backend: %v; want not implemented", err)
	}
}
