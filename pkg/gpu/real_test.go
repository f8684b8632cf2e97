package gpu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
)

// TestReal runs the package against the real NVIDIA driver. It needs a GPU
// host and SGLANGD_REAL_GPU=1; start a GPU load first (e.g. a PyTorch
// matmul loop) so the telemetry shows a busy GPU. It prints what it reads
// for the record: driver, gate verdicts, inventory, allocation outcomes,
// telemetry samples and Prometheus gauges. Files land in $OUT when set.
func TestReal(t *testing.T) {
	if os.Getenv("SGLANGD_REAL_GPU") != "1" {
		t.Skip("set SGLANGD_REAL_GPU=1 on a host with NVIDIA GPUs to run against the real driver")
	}
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m, err := New(Options{Registerer: reg, TelemetryInterval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	t0 := time.Now()
	drv, err := m.Driver(ctx)
	if err != nil {
		t.Fatalf("open NVML: %v", err)
	}
	say("== driver (NVML opened in %s)", time.Since(t0).Round(time.Microsecond))
	say("driver_version=%s nvml_version=%s cuda_driver_version=%d (CUDA %s)", drv.Version, drv.NVMLVersion, drv.CUDAVersionInt, drv.CUDAVersion)
	var syms []string
	for name, ok := range m.syms {
		syms = append(syms, fmt.Sprintf("%s=%v", name, ok))
	}
	sort.Strings(syms)
	say("symbols: %s", strings.Join(syms, " "))

	say("\n== driver gate")
	v, err := m.Gate(ctx, "")
	say("gpu.min_driver=570, image CUDA unknown: ok=%v err=%v\n  %s", v.OK, err, js(v))
	for _, img := range []string{"CUDA_VERSION=12.8.1", "CUDA_VERSION=13.0.2", "13.1", "14.0"} {
		v, err := m.Gate(ctx, img)
		say("image %-20s ok=%v required=%s message=%q err=%v", img, v.OK, v.Required, v.Message, err)
	}
	hi := Evaluate(Policy{MinDriver: "999.1"}, drv.Version, drv.CUDAVersionInt, "")
	say("gpu.min_driver=999.1 (forced failure): ok=%v error=%q hint=%q", hi.OK, hi.Err(), hi.Hint)

	say("\n== inventory")
	t0 = time.Now()
	inv, err := m.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	firstInv := time.Since(t0)
	const reps = 20
	t0 = time.Now()
	for range reps {
		if _, err := m.Inventory(ctx); err != nil {
			t.Fatal(err)
		}
	}
	say("%d GPU(s); inventory took %s (first), %s (mean of %d)", len(inv.GPUs), firstInv.Round(time.Microsecond), (time.Since(t0) / reps).Round(time.Microsecond), reps)
	for _, d := range inv.GPUs {
		b, _ := json.MarshalIndent(d, "", "  ")
		say("%s", b)
	}
	if len(inv.GPUs) == 0 {
		t.Fatal("NVML reports no GPUs")
	}
	for _, d := range inv.GPUs {
		if d.UUID == "" || d.MemoryTotalBytes == 0 {
			t.Errorf("gpu %d: uuid %q memory %d", d.Index, d.UUID, d.MemoryTotalBytes)
		}
	}

	say("\n== allocation")
	n := len(inv.GPUs)
	_, err = m.Allocate(ctx, Request{Session: "too-many", Count: n + 1})
	say("ask %d of %d: %v (resource exhausted: %v)", n+1, n, err, errors.Is(err, errdefs.ErrResourceExhausted))
	if !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("asking for %d GPUs: %v", n+1, err)
	}
	a, err := m.Allocate(ctx, Request{Session: "real-1", Count: n})
	if err != nil {
		say("ask all %d, foreign processes refused: %v (conflict: %v) hint: %s", n, err, errors.Is(err, errdefs.ErrConflict), hintOf(err))
		a, err = m.Allocate(ctx, Request{Session: "real-1", Count: n, AllowForeignProcesses: true})
	}
	if err != nil {
		t.Fatalf("allocate %d with foreign processes allowed: %v", n, err)
	}
	say("session real-1 holds %s", js(a))
	_, err = m.Allocate(ctx, Request{Session: "real-2", Devices: []string{a.UUIDs[0]}, AllowForeignProcesses: true})
	say("session real-2 asks for %s: %v (conflict: %v)", a.UUIDs[0], err, errors.Is(err, errdefs.ErrConflict))
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("second session got a held GPU: %v", err)
	}

	say("\n== telemetry (every 250ms for 3s, while the GPU load runs)")
	dir := os.Getenv("OUT")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "gpu-telemetry.csv")
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	samples := 0
	var busiest uint32
	sum, err := m.TelemetryToFile(tctx, path, TelemetryOptions{UUIDs: a.UUIDs, OnSample: func(s []Sample) {
		samples++
		for _, x := range s {
			busiest = max(busiest, x.UtilizationPercent)
			say("%s", js(x))
		}
		if samples == 6 {
			mfs, _ := reg.Gather()
			say("-- Prometheus gauges at sample 6:")
			for _, mf := range mfs {
				for _, mm := range mf.GetMetric() {
					var ls []string
					for _, lp := range mm.GetLabel() {
						ls = append(ls, lp.GetName()+"=\""+lp.GetValue()+"\"")
					}
					val := mm.GetGauge().GetValue()
					if mm.GetCounter() != nil {
						val = mm.GetCounter().GetValue()
					}
					say("%s{%s} %g", mf.GetName(), strings.Join(ls, ","), val)
				}
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(sum, "", "  ")
	say("-- summary\n%s", b)
	csvData, _ := os.ReadFile(path)
	say("-- %s (%d bytes, %d lines)", path, len(csvData), strings.Count(string(csvData), "\n"))
	if samples < 10 {
		t.Errorf("only %d samples in 3s at 250ms", samples)
	}
	if busiest == 0 {
		t.Errorf("no GPU showed any utilization; was the PyTorch load running?")
	}

	// Cost of one sample, for sizing the interval.
	gpus := make([]sampledGPU, 0, len(a.UUIDs))
	for _, u := range a.UUIDs {
		d, _ := m.lib.DeviceGetHandleByUUID(u)
		idx, _ := d.GetIndex()
		gpus = append(gpus, sampledGPU{dev: d, uuid: u, index: idx})
	}
	t0 = time.Now()
	const sampleReps = 200
	for range sampleReps {
		for _, g := range gpus {
			sampleGPU(g, m.syms, time.Now())
		}
	}
	say("\n== cost: one telemetry sample of %d GPU(s) takes %s (mean of %d)", len(gpus), (time.Since(t0) / sampleReps).Round(time.Microsecond), sampleReps)

	rel, ok := m.Release("real-1")
	say("released %v: %v", ok, rel.UUIDs)
	if gauges := seriesCount(t, reg, "sglangd_gpu_utilization_percent"); gauges != 0 {
		t.Errorf("%d utilization gauges remain after telemetry ended", gauges)
	}
}
