package gpu

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/pkg/gpu/gputest"
)

func TestManager_Inventory(t *testing.T) {
	ctx := context.Background()
	h := newFakeHost(t, 8, "580.159.04", 13000)
	h.Set(3, func(g *gputest.GPU) {
		g.Util, g.MemUtil, g.UsedBytes, g.PowerMW, g.TempC, g.SMMHz = 97, 41, 60<<30, 612_345, 71, 1980
		g.Throttle = nvml.ClocksEventReasonSwPowerCap | nvml.ClocksThrottleReasonHwThermalSlowdown
	})
	h.Foreign(3, 4242, "python3", 60<<30)
	h.Foreign(3, 17, "nvidia-cuda-mps-server", notAvailable)
	m, _, _ := newTestManager(t, h, Options{})

	if n := h.InitCount(); n != 0 {
		t.Fatalf("New called Init %d times; NVML must open lazily", n)
	}
	inv, err := m.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Mode != ModeNVML || inv.Driver.Version != "580.159.04" || inv.Driver.CUDAVersion != "13.0" ||
		inv.Driver.CUDAVersionInt != 13000 || inv.Driver.NVMLVersion != "12.550.54.15" {
		t.Errorf("driver = %+v", inv.Driver)
	}
	if !inv.Gate.OK || inv.Gate.Required != "570" {
		t.Errorf("gate = %+v; want OK against 570", inv.Gate)
	}
	if len(inv.GPUs) != 8 {
		t.Fatalf("got %d GPUs, want 8", len(inv.GPUs))
	}
	for i, d := range inv.GPUs {
		if d.Index != i || d.UUID != h.UUID(i) || d.Name != "NVIDIA H100 80GB HBM3" || d.MemoryTotalBytes != 80<<30 {
			t.Errorf("gpu %d = index %d uuid %s name %q total %d", i, d.Index, d.UUID, d.Name, d.MemoryTotalBytes)
		}
		if len(d.Unavailable) != 0 {
			t.Errorf("gpu %d unavailable readings: %v", i, d.Unavailable)
		}
	}
	busy := inv.GPUs[3]
	want := Metrics{UtilizationPercent: 97, MemoryUtilizationPercent: 41, MemoryUsedBytes: 60 << 30, MemoryTotalBytes: 80 << 30,
		PowerWatts: 612.345, TemperatureCelsius: 71, SMClockMHz: 1980, ThrottleReasons: 4 | 64}
	if busy.Metrics != want {
		t.Errorf("busy GPU metrics = %+v\nwant %+v", busy.Metrics, want)
	}
	if !slices.Equal(busy.Throttle, []string{"sw_power_cap", "hw_thermal_slowdown"}) {
		t.Errorf("throttle names = %v", busy.Throttle)
	}
	wantProcs := []Process{{PID: 17, UsedMemoryBytes: 0, Name: "nvidia-cuda-mps-server"}, {PID: 4242, UsedMemoryBytes: 60 << 30, Name: "python3"}}
	if !slices.Equal(busy.Processes, wantProcs) || !busy.Foreign || busy.Session != "" {
		t.Errorf("busy GPU processes = %+v foreign=%v session=%q; want %+v, foreign", busy.Processes, busy.Foreign, busy.Session, wantProcs)
	}
	if inv.GPUs[0].Foreign || inv.GPUs[0].Processes == nil {
		t.Errorf("idle GPU: foreign=%v processes=%v; want not foreign and an empty (non-nil) list", inv.GPUs[0].Foreign, inv.GPUs[0].Processes)
	}
	if _, err := m.Inventory(ctx); err != nil {
		t.Fatal(err)
	}
	if n := h.InitCount(); n != 1 {
		t.Errorf("Init called %d times over two inventories, want 1", n)
	}
}

// An older driver lacks newer entry points: the manager must look them up
// before calling (calling a missing one kills the process), fall back to
// the older name for the throttle mask and report the rest unavailable.
func TestManager_Inventory_MissingSymbols(t *testing.T) {
	h := newFakeHost(t, 1, "530.30.02", 12010)
	h.Missing(symClocksEvent, symPowerUsage)
	// Calling these would panic (the mock's unset-function behaviour),
	// just as the real library would die on a missing symbol.
	h.Device(0).GetCurrentClocksEventReasonsFunc = nil
	h.Device(0).GetPowerUsageFunc = nil
	h.Set(0, func(g *gputest.GPU) { g.Throttle = nvml.ClocksEventReasonSwPowerCap })

	m, _, _ := newTestManager(t, h, Options{Policy: Policy{MinDriver: "525"}})
	inv, err := m.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	g := inv.GPUs[0]
	if g.ThrottleReasons != nvml.ClocksEventReasonSwPowerCap {
		t.Errorf("throttle = %d; want the mask read through the older entry point", g.ThrottleReasons)
	}
	if len(g.Unavailable) != 1 || !strings.HasPrefix(g.Unavailable[0], "power: nvmlDeviceGetPowerUsage not in this driver") {
		t.Errorf("unavailable = %q; want power named as missing", g.Unavailable)
	}
}

func TestManager_InitRetried(t *testing.T) {
	h := newFakeHost(t, 1, "580.159.04", 13000)
	h.FailInit(nvml.ERROR_DRIVER_NOT_LOADED)
	m, _, _ := newTestManager(t, h, Options{})
	_, err := m.Inventory(context.Background())
	var dnf *DriverNotFoundError
	if !errors.As(err, &dnf) || !dnf.NotLoaded || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("first Inventory = %v; want a not-loaded DriverNotFoundError", err)
	}
	if !strings.HasPrefix(err.Error(), "NVIDIA driver not found (libnvidia-ml.so.1): ") || !strings.Contains(dnf.Hint(), "modprobe") {
		t.Errorf("error %q / hint %q", err, dnf.Hint())
	}
	// The module got loaded: the next call opens NVML without a restart.
	if _, err := m.Inventory(context.Background()); err != nil {
		t.Fatalf("second Inventory: %v", err)
	}
	if n := h.InitCount(); n != 2 {
		t.Errorf("Init called %d times, want 2", n)
	}
}

func TestManager_Inventory_LostGPU(t *testing.T) {
	h := newFakeHost(t, 2, "580.159.04", 13000)
	h.Set(1, func(g *gputest.GPU) { g.Lost = true })
	m, _, _ := newTestManager(t, h, Options{})
	_, err := m.Inventory(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gpu 1") || !strings.Contains(err.Error(), "compute processes") {
		t.Fatalf("Inventory with a lost GPU = %v; want an error naming gpu 1's process list", err)
	}
}

func TestThrottleNames(t *testing.T) {
	if got := ThrottleNames(0); got != nil {
		t.Errorf("ThrottleNames(0) = %v", got)
	}
	got := ThrottleNames(1 | 8 | 1<<20)
	if !slices.Equal(got, []string{"gpu_idle", "hw_slowdown", "0x100000"}) {
		t.Errorf("ThrottleNames = %v", got)
	}
	if Throttling(nvml.ClocksEventReasonGpuIdle) || !Throttling(nvml.ClocksEventReasonSwPowerCap|nvml.ClocksEventReasonGpuIdle) {
		t.Error("Throttling: idle alone is not throttling, a power cap is")
	}
}
