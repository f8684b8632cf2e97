package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/config"
	"github.com/sglangd/sglangd/pkg/gpu"
)

// gpuOptions maps the gpu config section to the GPU manager's options.
func gpuOptions(c config.GPUConfig, log *zap.Logger, reg prometheus.Registerer) gpu.Options {
	return gpu.Options{
		Mode:                  c.Mode,
		LibraryPath:           c.LibraryPath,
		Policy:                gpu.Policy{MinDriver: c.MinDriver, AllowForwardCompat: c.AllowForwardCompat},
		AllowForeignProcesses: c.AllowForeignProcesses,
		TelemetryInterval:     c.TelemetryInterval.D(),
		Logger:                log,
		Registerer:            reg,
	}
}

// gpuBackend adapts the GPU manager to the API server's GPUBackend,
// converting its structs to wire types.
type gpuBackend struct{ m *gpu.Manager }

func (b gpuBackend) GPUs(ctx context.Context, imageCUDA string) (*api.GPUList, error) {
	inv, err := b.m.Inventory(ctx)
	if err != nil {
		return nil, err
	}
	verdict := inv.Gate
	if imageCUDA != "" && inv.Mode != gpu.ModeNone {
		verdict = gpu.Evaluate(b.m.Policy(), inv.Driver.Version, inv.Driver.CUDAVersionInt, imageCUDA)
	}
	return apiGPUList(inv, verdict), nil
}

func apiGPUList(inv *gpu.Inventory, v gpu.Verdict) *api.GPUList {
	out := &api.GPUList{
		Mode:   inv.Mode,
		Driver: api.GPUDriver{Version: inv.Driver.Version, NVMLVersion: inv.Driver.NVMLVersion, CUDAVersion: inv.Driver.CUDAVersion},
		Gate: api.GPUGate{OK: v.OK, Skipped: v.Skipped, Driver: v.Driver, DriverCUDA: v.DriverCUDA, MinDriver: v.MinDriver,
			ImageCUDA: v.ImageCUDA, CUDAMinDriver: v.CUDAMinDriver, Required: v.Required, ForwardCompat: v.ForwardCompat,
			Message: v.Message, Hint: v.Hint, Warnings: v.Warnings},
		GPUs: make([]api.GPU, 0, len(inv.GPUs)),
	}
	for _, d := range inv.GPUs {
		g := api.GPU{Index: d.Index, UUID: d.UUID, Name: d.Name,
			UtilizationPercent: d.UtilizationPercent, MemoryUtilizationPercent: d.MemoryUtilizationPercent,
			MemoryUsedBytes: d.MemoryUsedBytes, MemoryTotalBytes: d.MemoryTotalBytes, PowerWatts: d.PowerWatts,
			TemperatureCelsius: d.TemperatureCelsius, SMClockMHz: d.SMClockMHz, ThrottleReasons: d.ThrottleReasons,
			Throttle: d.Throttle, Session: d.Session, Foreign: d.Foreign, Unavailable: d.Unavailable,
			Processes: make([]api.GPUProcess, 0, len(d.Processes))}
		for _, p := range d.Processes {
			g.Processes = append(g.Processes, api.GPUProcess{PID: p.PID, UsedMemoryBytes: p.UsedMemoryBytes, Name: p.Name})
		}
		out.GPUs = append(out.GPUs, g)
	}
	return out
}

// checkGPU is the doctor's GPU check: is the driver there, does it pass
// the gate against gpu.min_driver, and are the GPUs fit for comparable
// profiles (no foreign processes, no throttling while idle).
func (d *daemon) checkGPU(ctx context.Context) api.Check {
	if d.gpus == nil {
		return api.Check{Status: api.CheckSkip, Message: "GPU manager not started yet"}
	}
	if d.gpus.Mode() == gpu.ModeNone {
		return api.Check{Status: api.CheckSkip, Message: "gpu.mode is none: sessions run without GPUs (simulator)",
			Details: map[string]string{"mode": gpu.ModeNone}}
	}
	inv, err := d.gpus.Inventory(ctx)
	if err != nil {
		return api.Check{Status: api.CheckFail, Message: err.Error(), Hint: api.HintOf(err)}
	}
	g := inv.Gate
	details := map[string]string{"mode": inv.Mode, "driver": inv.Driver.Version, "cuda": inv.Driver.CUDAVersion,
		"min_driver": g.MinDriver, "gpus": fmt.Sprint(len(inv.GPUs))}
	if !g.OK {
		return api.Check{Status: api.CheckFail, Message: g.Message, Hint: g.Hint, Details: details}
	}
	names := map[string]int{}
	var foreign, throttled []string
	for _, dev := range inv.GPUs {
		names[dev.Name]++
		if dev.Foreign {
			var ps []string
			for _, p := range dev.Processes {
				ps = append(ps, strings.TrimSpace(fmt.Sprintf("pid %d %s", p.PID, p.Name)))
			}
			foreign = append(foreign, fmt.Sprintf("gpu %d runs %s", dev.Index, strings.Join(ps, ", ")))
		}
		if gpu.Throttling(dev.ThrottleReasons) {
			throttled = append(throttled, fmt.Sprintf("gpu %d is throttled (%s)", dev.Index, strings.Join(dev.Throttle, ",")))
		}
	}
	var kinds []string
	for n, c := range names {
		kinds = append(kinds, fmt.Sprintf("%d× %s", c, n))
	}
	sort.Strings(kinds)
	msg := fmt.Sprintf("%s; %d GPU(s)", g.Message, len(inv.GPUs))
	if len(kinds) > 0 {
		msg += ": " + strings.Join(kinds, ", ")
	}
	res := api.Check{Status: api.CheckOK, Message: msg, Details: details}
	var warns []string
	warns = append(warns, g.Warnings...)
	warns = append(warns, foreign...)
	warns = append(warns, throttled...)
	if len(inv.GPUs) == 0 {
		warns = append(warns, "the driver reports no GPUs")
	}
	if len(warns) > 0 {
		res.Status = api.CheckWarn
		res.Message = msg + "; " + strings.Join(warns, "; ")
		switch {
		case len(foreign) > 0:
			res.Hint = "sessions skip GPUs running processes sglangd did not start (unless gpu.allow_foreign_processes); stop them for comparable profiles"
		case len(throttled) > 0:
			res.Hint = "throttled GPUs give slower, noisy profiles: check cooling and power limits (nvidia-smi -q -d PERFORMANCE)"
		}
	}
	return res
}

// reportGPUs logs the driver gate once after start-up, so an operator
// sees a missing or old driver in the journal before the first session
// fails on it. It never blocks start-up and never fails the daemon.
func (d *daemon) reportGPUs(ctx context.Context) {
	if d.gpus.Mode() == gpu.ModeNone {
		d.log.Info("gpu.mode is none: sessions run without GPUs")
		return
	}
	go func() {
		v, err := d.gpus.Gate(ctx, "")
		switch {
		case v.Driver == "" && err != nil:
			d.log.Warn("GPU actions will fail until the driver is fixed", zap.Error(err), zap.String("hint", api.HintOf(err)))
		case err != nil:
			d.log.Warn("NVIDIA driver fails the gate", zap.String("driver", v.Driver), zap.String("required", v.Required), zap.Error(err))
		default:
			d.log.Info("NVIDIA driver passes the gate", zap.String("driver", v.Driver), zap.String("cuda", v.DriverCUDA), zap.String("min_driver", v.MinDriver))
		}
	}()
}
