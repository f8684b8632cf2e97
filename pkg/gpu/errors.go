package gpu

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// DriverNotFoundError says NVML could not be used because the NVIDIA
// driver is missing: its library would not load, or it loaded but the
// kernel module is not there. The daemon keeps running; only GPU actions
// fail with it.
type DriverNotFoundError struct {
	// Library is the name or path given to dlopen.
	Library string
	// Detail is the loader's own message (dlerror) or NVML's error.
	Detail string
	// NotLoaded is true when the library loaded but the kernel driver
	// did not answer (NVML_ERROR_DRIVER_NOT_LOADED).
	NotLoaded bool
}

func (e *DriverNotFoundError) Error() string {
	return fmt.Sprintf("NVIDIA driver not found (%s): %s", e.Library, e.Detail)
}

// Hint says what to do; the API server and CLI show it under the error.
func (e *DriverNotFoundError) Hint() string {
	if e.NotLoaded {
		return "the NVIDIA kernel module is not loaded: check `nvidia-smi` and `modprobe nvidia`, or set gpu.mode: none to run without GPUs"
	}
	return "install the NVIDIA driver (>= " + DefaultMinDriver + "), point gpu.library_path at libnvidia-ml.so.1, or set gpu.mode: none to run without GPUs"
}

// Unwrap classifies the error as errdefs.ErrFailedPrecondition: the host
// has to change before GPU work can run.
func (e *DriverNotFoundError) Unwrap() error { return errdefs.ErrFailedPrecondition }
