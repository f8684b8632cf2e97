package gpu

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Metrics are the readings that change while a GPU works. A reading the
// GPU or driver does not offer stays zero and is named in the owner's
// Unavailable list.
type Metrics struct {
	// UtilizationPercent is the share of the last sample period in which
	// a kernel ran.
	UtilizationPercent uint32 `json:"utilization_percent"`
	// MemoryUtilizationPercent is the share in which memory was read or
	// written.
	MemoryUtilizationPercent uint32  `json:"memory_utilization_percent"`
	MemoryUsedBytes          uint64  `json:"memory_used_bytes"`
	MemoryTotalBytes         uint64  `json:"memory_total_bytes"`
	PowerWatts               float64 `json:"power_watts"`
	TemperatureCelsius       uint32  `json:"temperature_celsius"`
	SMClockMHz               uint32  `json:"sm_clock_mhz"`
	// ThrottleReasons is NVML's clocks event reasons bitmask; see
	// ThrottleNames.
	ThrottleReasons uint64 `json:"throttle_reasons"`
}

// Process is a compute process on a GPU.
type Process struct {
	PID             uint32 `json:"pid"`
	UsedMemoryBytes uint64 `json:"used_memory_bytes"`
	// Name is the executable NVML reports; empty when unknown.
	Name string `json:"name,omitempty"`
}

// Device is one GPU as the inventory sees it.
type Device struct {
	Index int    `json:"index"`
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
	Metrics
	// Throttle names the bits set in ThrottleReasons.
	Throttle []string `json:"throttle,omitempty"`
	// Processes are the compute processes running on the GPU.
	Processes []Process `json:"processes"`
	// Session is the sglangd session holding the GPU, "" when free.
	Session string `json:"session,omitempty"`
	// Foreign is true when compute processes run on a GPU no session
	// holds: someone else is using it.
	Foreign bool `json:"foreign"`
	// Unavailable lists readings that failed, with NVML's reason.
	Unavailable []string `json:"unavailable,omitempty"`
}

// Inventory is the host's GPUs and driver at one moment.
type Inventory struct {
	Mode   string     `json:"mode"`
	Driver DriverInfo `json:"driver"`
	// Gate is the driver gate against the configured floor alone (no
	// image known).
	Gate Verdict  `json:"gate"`
	GPUs []Device `json:"gpus"`
}

// throttleBits names NVML's clocks event reason bits, lowest first.
var throttleBits = []struct {
	bit  uint64
	name string
}{
	{nvml.ClocksEventReasonGpuIdle, "gpu_idle"},
	{nvml.ClocksEventReasonApplicationsClocksSetting, "applications_clocks_setting"},
	{nvml.ClocksEventReasonSwPowerCap, "sw_power_cap"},
	{nvml.ClocksThrottleReasonHwSlowdown, "hw_slowdown"},
	{nvml.ClocksEventReasonSyncBoost, "sync_boost"},
	{nvml.ClocksEventReasonSwThermalSlowdown, "sw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwThermalSlowdown, "hw_thermal_slowdown"},
	{nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, "hw_power_brake_slowdown"},
	{nvml.ClocksEventReasonDisplayClockSetting, "display_clock_setting"},
	{nvml.ClocksEventReasonBoardLimit, "board_limit"},
	{nvml.ClocksEventReasonReliability, "reliability"},
}

// ThrottleNames names the bits of an NVML clocks event reasons mask
// ("sw_power_cap", "hw_thermal_slowdown", ...); unknown bits appear as
// "0x..." so nothing is hidden.
func ThrottleNames(mask uint64) []string {
	var names []string
	known := uint64(0)
	for _, b := range throttleBits {
		known |= b.bit
		if mask&b.bit != 0 {
			names = append(names, b.name)
		}
	}
	if rest := mask &^ known; rest != 0 {
		names = append(names, fmt.Sprintf("0x%x", rest))
	}
	return names
}

// Throttling reports whether a mask holds a reason that slows a busy GPU
// down; idle and sync boost alone are normal.
func Throttling(mask uint64) bool {
	return mask&^uint64(nvml.ClocksEventReasonGpuIdle|nvml.ClocksEventReasonSyncBoost|nvml.ClocksEventReasonApplicationsClocksSetting) != 0
}

// notAvailable is NVML's "value not available" marker (e.g. process
// memory inside some containers).
const notAvailable = math.MaxUint64

// readMetrics reads what changes while a GPU works. Failed readings are
// returned by name, never as an error: one missing sensor must not hide
// the others.
func readMetrics(d nvml.Device, syms symbols) (Metrics, []string) {
	var m Metrics
	var un []string
	miss := func(what string, ret nvml.Return) { un = append(un, what+": "+ret.Error()) }
	absent := func(what, sym string) { un = append(un, what+": "+sym+" not in this driver") }

	if mem, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
		m.MemoryUsedBytes, m.MemoryTotalBytes = mem.Used, mem.Total
	} else {
		miss("memory", ret)
	}
	if !syms[symUtilization] {
		absent("utilization", symUtilization)
	} else if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
		m.UtilizationPercent, m.MemoryUtilizationPercent = u.Gpu, u.Memory
	} else {
		miss("utilization", ret)
	}
	if !syms[symPowerUsage] {
		absent("power", symPowerUsage)
	} else if p, ret := d.GetPowerUsage(); ret == nvml.SUCCESS {
		m.PowerWatts = float64(p) / 1000
	} else {
		miss("power", ret)
	}
	if !syms[symTemperature] {
		absent("temperature", symTemperature)
	} else if t, ret := d.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		m.TemperatureCelsius = t
	} else {
		miss("temperature", ret)
	}
	if !syms[symClockInfo] {
		absent("sm_clock", symClockInfo)
	} else if c, ret := d.GetClockInfo(nvml.CLOCK_SM); ret == nvml.SUCCESS {
		m.SMClockMHz = c
	} else {
		miss("sm_clock", ret)
	}
	switch {
	case syms[symClocksEvent]:
		if r, ret := d.GetCurrentClocksEventReasons(); ret == nvml.SUCCESS {
			m.ThrottleReasons = r
		} else {
			miss("throttle_reasons", ret)
		}
	case syms[symClocksThrottle]:
		// Drivers before 535 only have the older name for the same mask.
		if r, ret := d.GetCurrentClocksThrottleReasons(); ret == nvml.SUCCESS {
			m.ThrottleReasons = r
		} else {
			miss("throttle_reasons", ret)
		}
	default:
		absent("throttle_reasons", symClocksEvent)
	}
	return m, un
}

// readDevice reads one GPU completely: identity, metrics and processes.
func readDevice(lib nvml.Interface, syms symbols, index int) (Device, error) {
	d, ret := lib.DeviceGetHandleByIndex(index)
	if ret != nvml.SUCCESS {
		return Device{}, nvmlError(fmt.Sprintf("gpu %d: get handle", index), ret)
	}
	uuid, ret := d.GetUUID()
	if ret != nvml.SUCCESS {
		return Device{}, nvmlError(fmt.Sprintf("gpu %d: read UUID", index), ret)
	}
	dev := Device{Index: index, UUID: uuid, Processes: []Process{}}
	if name, ret := d.GetName(); ret == nvml.SUCCESS {
		dev.Name = name
	} else {
		dev.Unavailable = append(dev.Unavailable, "name: "+ret.Error())
	}
	var un []string
	dev.Metrics, un = readMetrics(d, syms)
	dev.Unavailable = append(dev.Unavailable, un...)
	dev.Throttle = ThrottleNames(dev.ThrottleReasons)
	procs, err := readProcesses(lib, syms, d)
	if err != nil {
		// Without the process list a busy GPU could look free: fail
		// rather than hand it out.
		return Device{}, fmt.Errorf("gpu %d (%s): %w", index, uuid, err)
	}
	dev.Processes = procs
	return dev, nil
}

func readProcesses(lib nvml.Interface, syms symbols, d nvml.Device) ([]Process, error) {
	out := []Process{}
	if !syms[symComputeProcesses] {
		return nil, nvmlError("list compute processes ("+symComputeProcesses+" not in this driver)", nvml.ERROR_FUNCTION_NOT_FOUND)
	}
	infos, ret := d.GetComputeRunningProcesses()
	if ret != nvml.SUCCESS {
		return nil, nvmlError("list compute processes", ret)
	}
	for _, p := range infos {
		proc := Process{PID: p.Pid, UsedMemoryBytes: p.UsedGpuMemory}
		if proc.UsedMemoryBytes == notAvailable {
			proc.UsedMemoryBytes = 0
		}
		if syms[symProcessName] {
			if name, ret := lib.SystemGetProcessName(int(p.Pid)); ret == nvml.SUCCESS {
				proc.Name = name
			}
		}
		out = append(out, proc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// Inventory reads every GPU, the driver and the gate against the
// configured floor, and marks which session holds each GPU.
func (m *Manager) Inventory(ctx context.Context) (*Inventory, error) {
	if m.opts.Mode == ModeNone {
		v, _ := m.Gate(ctx, "")
		return &Inventory{Mode: ModeNone, Gate: v, GPUs: []Device{}}, nil
	}
	lib, syms, err := m.nvml(ctx)
	if err != nil {
		return nil, err
	}
	inv, err := m.readInventory(ctx, lib, syms)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.markHolders(inv.GPUs)
	return inv, nil
}

func (m *Manager) readInventory(ctx context.Context, lib nvml.Interface, syms symbols) (*Inventory, error) {
	drv, err := readDriver(lib, syms)
	if err != nil {
		return nil, err
	}
	inv := &Inventory{Mode: ModeNVML, Driver: drv, GPUs: []Device{},
		Gate: Evaluate(m.opts.Policy, drv.Version, drv.CUDAVersionInt, "")}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nvmlError("count GPUs", ret)
	}
	for i := 0; i < n; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dev, err := readDevice(lib, syms, i)
		if err != nil {
			return nil, err
		}
		inv.GPUs = append(inv.GPUs, dev)
	}
	return inv, nil
}

// markHolders fills Session and Foreign from the allocation table; the
// caller holds m.mu.
func (m *Manager) markHolders(devs []Device) {
	for i := range devs {
		devs[i].Session = m.holder[devs[i].UUID]
		devs[i].Foreign = devs[i].Session == "" && len(devs[i].Processes) > 0
	}
}
