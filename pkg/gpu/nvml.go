package gpu

import (
	"github.com/sglangd/sglangd/internal/hint"

	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/dl"
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/containerd/errdefs"
)

// DefaultLibrary is the NVML library dlopen looks for on the loader path.
const DefaultLibrary = "libnvidia-ml.so.1"

// NVML entry points sglangd calls on devices. Calling one the installed
// driver lacks kills the process with "symbol lookup error" (go-nvml
// leaves nvml* symbols unresolved until first use), so each is looked up
// once after Init and only called when present.
const (
	symClockInfo        = "nvmlDeviceGetClockInfo"
	symClocksEvent      = "nvmlDeviceGetCurrentClocksEventReasons" // driver 535+
	symClocksThrottle   = "nvmlDeviceGetCurrentClocksThrottleReasons"
	symComputeProcesses = "nvmlDeviceGetComputeRunningProcesses"
	symPowerUsage       = "nvmlDeviceGetPowerUsage"
	symProcessName      = "nvmlSystemGetProcessName"
	symTemperature      = "nvmlDeviceGetTemperature"
	symUtilization      = "nvmlDeviceGetUtilizationRates"
	symCUDADriver       = "nvmlSystemGetCudaDriverVersion"
)

var probedSymbols = []string{symClockInfo, symClocksEvent, symClocksThrottle, symComputeProcesses,
	symPowerUsage, symProcessName, symTemperature, symUtilization, symCUDADriver}

// symbols records which probed entry points the loaded driver has.
type symbols map[string]bool

func probeSymbols(lib nvml.Interface) symbols {
	s := symbols{}
	ext := lib.Extensions()
	for _, name := range probedSymbols {
		s[name] = ext.LookupSymbol(name) == nil
	}
	return s
}

// initError turns a failed nvml.Init into an error that says what is
// wrong. go-nvml reports every dlopen failure as ERROR_LIBRARY_NOT_FOUND
// and drops the loader's message, so dlopen is repeated here to recover it
// ("libnvidia-ml.so.1: cannot open shared object file: No such file or
// directory", or a wrong-architecture or missing-dependency message).
func initError(library string, ret nvml.Return) error {
	switch ret {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return &DriverNotFoundError{Library: library, Detail: dlopenError(library)}
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return &DriverNotFoundError{Library: library, NotLoaded: true,
			Detail: "the library loaded but the kernel driver did not answer: " + ret.Error()}
	case nvml.ERROR_NO_PERMISSION:
		return hint.With(fmt.Errorf("NVML init: %s: %w", ret.Error(), errdefs.ErrPermissionDenied),
			"the sglangd user needs read-write access to /dev/nvidia*")
	}
	return fmt.Errorf("NVML init (%s): %s: %w", library, ret.Error(), errdefs.ErrUnavailable)
}

func dlopenError(library string) string {
	lib := dl.New(library, dl.RTLD_LAZY|dl.RTLD_GLOBAL)
	if err := lib.Open(); err != nil {
		return err.Error()
	}
	_ = lib.Close()
	return "the library loads, but NVML reported it missing (" + nvml.ERROR_LIBRARY_NOT_FOUND.Error() + ")"
}

// nvmlError wraps a failed NVML call with the operation and device.
func nvmlError(op string, ret nvml.Return) error {
	var class error = errdefs.ErrUnavailable
	switch ret {
	case nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_FUNCTION_NOT_FOUND:
		class = errdefs.ErrNotImplemented
	case nvml.ERROR_NOT_FOUND, nvml.ERROR_INVALID_ARGUMENT:
		class = errdefs.ErrNotFound
	case nvml.ERROR_NO_PERMISSION:
		class = errdefs.ErrPermissionDenied
	}
	return fmt.Errorf("%s: %s: %w", op, ret.Error(), class)
}
