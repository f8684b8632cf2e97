package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/dl"
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/api/server"
	"github.com/sglangd/sglangd/pkg/config"
	"github.com/sglangd/sglangd/pkg/gpu"
	"github.com/sglangd/sglangd/pkg/gpu/gputest"
)

func TestGPUOptions(t *testing.T) {
	c := config.Default().GPU
	c.LibraryPath, c.MinDriver, c.AllowForwardCompat, c.AllowForeignProcesses = "/opt/nvidia/libnvidia-ml.so.1", "580.65.06", true, true
	c.TelemetryInterval = config.Duration(500 * time.Millisecond)
	o := gpuOptions(c, zap.NewNop(), prometheus.NewRegistry())
	if o.Mode != gpu.ModeNVML || o.LibraryPath != c.LibraryPath || o.Policy != (gpu.Policy{MinDriver: "580.65.06", AllowForwardCompat: true}) ||
		!o.AllowForeignProcesses || o.TelemetryInterval != 500*time.Millisecond || o.Registerer == nil {
		t.Errorf("gpuOptions = %+v", o)
	}
	if d := gpuOptions(config.Default().GPU, nil, nil); d.Policy.MinDriver != "570" || d.TelemetryInterval != time.Second {
		t.Errorf("defaults map to %+v; want min driver 570 and 1s telemetry", d)
	}
}

func newGPUManager(t *testing.T, h *gputest.Host, opts gpu.Options) *gpu.Manager {
	t.Helper()
	if h != nil {
		opts.NVML = h.NVML()
	}
	m, err := gpu.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// GET /v1/gpus through the real server and client, over the mock NVML.
func TestGPUBackend_API(t *testing.T) {
	ctx := context.Background()
	h := gputest.NewHost(2, "580.159.04", 13000)
	h.Foreign(1, 4242, "python3", 2<<30)
	h.Set(0, func(g *gputest.GPU) { g.Util, g.PowerMW, g.Throttle = 88, 455_500, nvml.ClocksEventReasonSwPowerCap })
	m := newGPUManager(t, h, gpu.Options{})
	if _, err := m.Allocate(ctx, gpu.Request{Session: "s-1", Count: 1}); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{GPUs: gpuBackend{m: m}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler(false))
	defer hs.Close()
	c, _ := api.NewClient(hs.URL)

	l, err := c.GPUs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Mode != "nvml" || l.Driver.Version != "580.159.04" || l.Driver.CUDAVersion != "13.0" || !l.Gate.OK || l.Gate.Required != "570" || len(l.GPUs) != 2 {
		t.Fatalf("list = %+v", l)
	}
	g0, g1 := l.GPUs[0], l.GPUs[1]
	if g0.UUID != h.UUID(0) || g0.Session != "s-1" || g0.UtilizationPercent != 88 || g0.PowerWatts != 455.5 ||
		len(g0.Throttle) != 1 || g0.Throttle[0] != "sw_power_cap" || g0.Name != "NVIDIA H100 80GB HBM3" {
		t.Errorf("gpu 0 = %+v", g0)
	}
	if !g1.Foreign || len(g1.Processes) != 1 || g1.Processes[0] != (api.GPUProcess{PID: 4242, UsedMemoryBytes: 2 << 30, Name: "python3"}) {
		t.Errorf("gpu 1 = %+v", g1)
	}

	// With the image's CUDA: 13.0 raises the requirement, 13.1 fails.
	if l, err := c.GPUs(ctx, "13.0.2"); err != nil || !l.Gate.OK || l.Gate.Required != "580.65.06" || l.Gate.ImageCUDA != "13.0" {
		t.Errorf("cuda 13.0.2: %+v, %v", l.Gate, err)
	}
	if l, err := c.GPUs(ctx, "13.1"); err != nil || l.Gate.OK || !strings.Contains(l.Gate.Message, "CUDA 13.1") || l.Gate.Hint == "" {
		t.Errorf("cuda 13.1: %+v, %v", l.Gate, err)
	}
}

func TestCheckGPU(t *testing.T) {
	tests := []struct {
		name   string
		host   func() *gputest.Host
		opts   gpu.Options
		status api.CheckStatus
		msg    []string
		hint   string
	}{
		{name: "ok", host: func() *gputest.Host { return gputest.NewHost(2, "580.159.04", 13000) },
			status: api.CheckOK, msg: []string{"NVIDIA driver 580.159.04 meets gpu.min_driver >= 570", "2 GPU(s): 2× NVIDIA H100 80GB HBM3"}},
		{name: "old driver", host: func() *gputest.Host { return gputest.NewHost(8, "550.54.15", 12040) },
			status: api.CheckFail, msg: []string{"550.54.15 is too old", ">= 570"}, hint: "gpu.min_driver"},
		{name: "min_driver from config", host: func() *gputest.Host { return gputest.NewHost(1, "575.51.03", 12090) },
			opts: gpu.Options{Policy: gpu.Policy{MinDriver: "580.65.06"}}, status: api.CheckFail, msg: []string{">= 580.65.06"}},
		{name: "foreign processes", host: func() *gputest.Host {
			h := gputest.NewHost(2, "580.159.04", 13000)
			h.Foreign(1, 4242, "python3", 1<<30)
			return h
		}, status: api.CheckWarn, msg: []string{"gpu 1 runs pid 4242 python3"}, hint: "allow_foreign_processes"},
		{name: "throttled", host: func() *gputest.Host {
			h := gputest.NewHost(1, "580.159.04", 13000)
			h.Set(0, func(g *gputest.GPU) { g.Throttle = nvml.ClocksEventReasonSwThermalSlowdown })
			return h
		}, status: api.CheckWarn, msg: []string{"gpu 0 is throttled (sw_thermal_slowdown)"}, hint: "cooling"},
		{name: "driver not loaded", host: func() *gputest.Host {
			h := gputest.NewHost(1, "580.159.04", 13000)
			h.FailInit(nvml.ERROR_DRIVER_NOT_LOADED)
			return h
		}, status: api.CheckFail, msg: []string{"NVIDIA driver not found (libnvidia-ml.so.1)"}, hint: "modprobe"},
		{name: "mode none", opts: gpu.Options{Mode: gpu.ModeNone}, status: api.CheckSkip, msg: []string{"gpu.mode is none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h *gputest.Host
			if tt.host != nil {
				h = tt.host()
			}
			d := &daemon{gpus: newGPUManager(t, h, tt.opts)}
			res := d.checkGPU(context.Background())
			if res.Status != tt.status {
				t.Fatalf("status %s, want %s: %s", res.Status, tt.status, res.Message)
			}
			for _, s := range tt.msg {
				if !strings.Contains(res.Message, s) {
					t.Errorf("message %q lacks %q", res.Message, s)
				}
			}
			if !strings.Contains(res.Hint, tt.hint) {
				t.Errorf("hint %q lacks %q", res.Hint, tt.hint)
			}
		})
	}
}

// Without an NVIDIA driver the daemon starts and serves; GPU actions fail
// with the driver message, and the doctor says so.
func TestDaemon_StartsWithoutDriver(t *testing.T) {
	if l := dl.New(gpu.DefaultLibrary, dl.RTLD_LAZY|dl.RTLD_GLOBAL); l.Open() == nil {
		_ = l.Close()
		t.Skip("libnvidia-ml.so.1 loads on this machine; this test needs one without the NVIDIA driver")
	}
	c, ctx := startInProcess(t, testConfig(t))
	_, err := c.GPUs(ctx, "")
	var ae *api.Error
	want := "NVIDIA driver not found (libnvidia-ml.so.1): libnvidia-ml.so.1: cannot open shared object file: No such file or directory"
	if !errors.As(err, &ae) || ae.Status != http.StatusPreconditionFailed || ae.Message != want || !strings.Contains(ae.Hint, "gpu.mode: none") {
		t.Errorf("GET /v1/gpus = %#v; want 412 %q with a hint", err, want)
	}
	rep, err := c.Doctor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, ch := range rep.Checks {
		if ch.Name == "gpu" {
			found = true
			if ch.Status != api.CheckFail || ch.Message != want {
				t.Errorf("doctor gpu check = %+v", ch)
			}
		}
	}
	if !found || rep.OK {
		t.Errorf("doctor: gpu check found=%v, report ok=%v", found, rep.OK)
	}
}
