package api

import (
	"context"
	"net/http"
	"net/url"
)

// GPUList is the body of GET /v1/gpus: the host's GPUs, the driver and
// the driver gate's verdict.
type GPUList struct {
	// Mode is "nvml" (real GPUs) or "none" (gpu.mode: none; no GPUs,
	// sessions run without device requests).
	Mode   string    `json:"mode"`
	Driver GPUDriver `json:"driver"`
	// Gate is the driver gate against gpu.min_driver and, when the
	// request named one (?cuda=13.0), the image's CUDA version.
	Gate GPUGate `json:"gate"`
	GPUs []GPU   `json:"gpus"`
}

// GPUDriver describes the installed NVIDIA driver.
type GPUDriver struct {
	Version     string `json:"version,omitempty"`
	NVMLVersion string `json:"nvml_version,omitempty"`
	// CUDAVersion is the newest CUDA release the driver supports.
	CUDAVersion string `json:"cuda_version,omitempty"`
}

// GPUGate is the driver gate's verdict.
type GPUGate struct {
	OK bool `json:"ok"`
	// Skipped is true in gpu.mode none.
	Skipped    bool   `json:"skipped,omitempty"`
	Driver     string `json:"driver,omitempty"`
	DriverCUDA string `json:"driver_cuda,omitempty"`
	// MinDriver is gpu.min_driver.
	MinDriver string `json:"min_driver"`
	ImageCUDA string `json:"image_cuda,omitempty"`
	// CUDAMinDriver is what the image's CUDA release needs.
	CUDAMinDriver string `json:"cuda_min_driver,omitempty"`
	// Required is the driver this verdict asks for.
	Required string `json:"required"`
	// ForwardCompat is true when the gate passed only through
	// gpu.allow_forward_compat.
	ForwardCompat bool     `json:"forward_compat,omitempty"`
	Message       string   `json:"message"`
	Hint          string   `json:"hint,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
}

// GPU is one GPU with its current readings.
type GPU struct {
	Index int    `json:"index"`
	UUID  string `json:"uuid"`
	Name  string `json:"name"`

	UtilizationPercent       uint32  `json:"utilization_percent"`
	MemoryUtilizationPercent uint32  `json:"memory_utilization_percent"`
	MemoryUsedBytes          uint64  `json:"memory_used_bytes"`
	MemoryTotalBytes         uint64  `json:"memory_total_bytes"`
	PowerWatts               float64 `json:"power_watts"`
	TemperatureCelsius       uint32  `json:"temperature_celsius"`
	SMClockMHz               uint32  `json:"sm_clock_mhz"`
	// ThrottleReasons is NVML's clocks event reasons bitmask; Throttle
	// names its bits.
	ThrottleReasons uint64   `json:"throttle_reasons"`
	Throttle        []string `json:"throttle,omitempty"`

	Processes []GPUProcess `json:"processes"`
	// Session is the sglangd session holding the GPU, "" when free.
	Session string `json:"session,omitempty"`
	// Foreign is true when compute processes run on a GPU no session
	// holds.
	Foreign bool `json:"foreign"`
	// Unavailable lists readings that failed, with the driver's reason.
	Unavailable []string `json:"unavailable,omitempty"`
}

// GPUProcess is a compute process on a GPU.
type GPUProcess struct {
	PID             uint32 `json:"pid"`
	UsedMemoryBytes uint64 `json:"used_memory_bytes"`
	Name            string `json:"name,omitempty"`
}

// GPUs lists the host's GPUs. imageCUDA, when not empty ("13.0",
// "12.8.1"), adds that CUDA release's driver requirement to the gate.
func (c *Client) GPUs(ctx context.Context, imageCUDA string) (*GPUList, error) {
	path := "/v1/gpus"
	if imageCUDA != "" {
		path += "?" + url.Values{"cuda": {imageCUDA}}.Encode()
	}
	var l GPUList
	if err := c.Do(ctx, http.MethodGet, path, nil, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
