// Package gputest provides a fake GPU host for tests of code that uses
// package gpu: go-nvml's DGX-H100 mock (8 × "NVIDIA H100 80GB HBM3" by
// default) with the functions it leaves unset - and that panic when
// called - filled from state the test controls: utilization, memory,
// power, temperature, SM clock, throttle reasons, compute processes, lost
// GPUs, missing driver symbols and failing Init.
//
// Pass Host.NVML() as gpu.Options.NVML.
package gputest

import (
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// GPU is the state a test controls for one fake GPU. New GPUs idle at
// 70 W, 30 °C, 345 MHz with the gpu_idle throttle bit set.
type GPU struct {
	Util, MemUtil uint32
	UsedBytes     uint64
	PowerMW       uint32
	TempC         uint32
	SMMHz         uint32
	Throttle      uint64
	Procs         []nvml.ProcessInfo
	// Lost makes every reading fail with ERROR_GPU_IS_LOST, as for a GPU
	// that fell off the bus.
	Lost bool
}

// Host is a fake NVML with n GPUs. It is safe for concurrent use.
type Host struct {
	srv *server.Server

	mu       sync.Mutex
	gpus     []*GPU
	names    map[uint32]string // pid -> process name
	missing  map[string]bool   // symbols the "driver" lacks
	initRets []nvml.Return     // Init results, in order; then SUCCESS
	inits    int
}

// NewHost returns a host with n H100 GPUs whose UUIDs are
// GPU-00000000-0000-0000-0000-00000000000<i>, reporting the given driver
// version ("580.159.04") and CUDA driver version (13000).
func NewHost(n int, driver string, cuda int) *Host {
	h := &Host{srv: dgxh100.NewWithGPUs(gpus.Multiple(n, gpus.H100_SXM5_80GB)...),
		names: map[uint32]string{}, missing: map[string]bool{}}
	h.srv.DriverVersion, h.srv.CudaDriverVersion = driver, cuda
	h.srv.InitFunc = func() nvml.Return {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.inits++
		if len(h.initRets) > 0 {
			r := h.initRets[0]
			h.initRets = h.initRets[1:]
			return r
		}
		return nvml.SUCCESS
	}
	h.srv.LookupSymbolFunc = func(name string) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.missing[name] {
			return fmt.Errorf("symbol %q not found: undefined symbol: %s", name, name)
		}
		return nil
	}
	h.srv.SystemGetProcessNameFunc = func(pid int) (string, nvml.Return) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if name, ok := h.names[uint32(pid)]; ok {
			return name, nvml.SUCCESS
		}
		return "", nvml.ERROR_NOT_FOUND
	}
	for i := range h.srv.Devices {
		h.fill(i)
	}
	return h
}

func (h *Host) fill(i int) {
	g := &GPU{PowerMW: 70_000, TempC: 30, SMMHz: 345, Throttle: nvml.ClocksEventReasonGpuIdle}
	h.gpus = append(h.gpus, g)
	dev := h.Device(i)
	dev.UUID = fmt.Sprintf("GPU-00000000-0000-0000-0000-%012d", i)
	// read runs f under the lock unless the GPU is lost.
	read := func(f func() uint64) (uint64, nvml.Return) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if g.Lost {
			return 0, nvml.ERROR_GPU_IS_LOST
		}
		return f(), nvml.SUCCESS
	}
	dev.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) {
		used, ret := read(func() uint64 { return g.UsedBytes })
		total := dev.MemoryInfo.Total
		return nvml.Memory{Total: total, Used: used, Free: total - used}, ret
	}
	dev.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
		v, ret := read(func() uint64 { return uint64(g.Util)<<32 | uint64(g.MemUtil) })
		return nvml.Utilization{Gpu: uint32(v >> 32), Memory: uint32(v)}, ret
	}
	dev.GetPowerUsageFunc = func() (uint32, nvml.Return) {
		v, ret := read(func() uint64 { return uint64(g.PowerMW) })
		return uint32(v), ret
	}
	dev.GetTemperatureFunc = func(s nvml.TemperatureSensors) (uint32, nvml.Return) {
		if s != nvml.TEMPERATURE_GPU {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		v, ret := read(func() uint64 { return uint64(g.TempC) })
		return uint32(v), ret
	}
	dev.GetClockInfoFunc = func(c nvml.ClockType) (uint32, nvml.Return) {
		if c != nvml.CLOCK_SM {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		v, ret := read(func() uint64 { return uint64(g.SMMHz) })
		return uint32(v), ret
	}
	dev.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
		return read(func() uint64 { return g.Throttle })
	}
	dev.GetCurrentClocksThrottleReasonsFunc = dev.GetCurrentClocksEventReasonsFunc
	dev.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if g.Lost {
			return nil, nvml.ERROR_GPU_IS_LOST
		}
		return append([]nvml.ProcessInfo(nil), g.Procs...), nvml.SUCCESS
	}
}

// NVML returns the fake library for gpu.Options.NVML.
func (h *Host) NVML() nvml.Interface { return h.srv }

// Server returns the underlying go-nvml mock for changes this package
// does not cover.
func (h *Host) Server() *server.Server { return h.srv }

// Device returns GPU i's mock device.
func (h *Host) Device(i int) *server.Device { return h.srv.Devices[i].(*server.Device) }

// UUID returns GPU i's UUID.
func (h *Host) UUID(i int) string { return h.Device(i).UUID }

// Set changes GPU i's state.
func (h *Host) Set(i int, f func(g *GPU)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h.gpus[i])
}

// Foreign starts a compute process on GPU i.
func (h *Host) Foreign(i int, pid uint32, name string, usedBytes uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.names[pid] = name
	h.gpus[i].Procs = append(h.gpus[i].Procs, nvml.ProcessInfo{Pid: pid, UsedGpuMemory: usedBytes})
}

// Missing makes the driver lack the named symbols (LookupSymbol fails).
func (h *Host) Missing(symbols ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range symbols {
		h.missing[s] = true
	}
}

// FailInit makes the next Init calls return rets, in order.
func (h *Host) FailInit(rets ...nvml.Return) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.initRets = append(h.initRets, rets...)
}

// InitCount returns how often Init was called.
func (h *Host) InitCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inits
}
