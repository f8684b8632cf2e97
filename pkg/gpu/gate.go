package gpu

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// DefaultMinDriver is the SGLang 26.01 image's stated driver requirement,
// used when Policy.MinDriver is empty.
const DefaultMinDriver = "570"

// Policy is what the driver gate enforces.
type Policy struct {
	// MinDriver is the lowest acceptable driver, dotted ("570",
	// "580.65.06"); empty means DefaultMinDriver. Forward compatibility
	// never relaxes it.
	MinDriver string
	// AllowForwardCompat accepts a driver below what the image's CUDA
	// release needs, for images that carry NVIDIA's CUDA
	// forward-compatibility package (datacenter GPUs only). The gate then
	// passes with a warning instead of failing.
	AllowForwardCompat bool
}

// Verdict is the outcome of the driver gate, with everything needed to
// explain it.
type Verdict struct {
	// OK is true when sessions may run on this driver.
	OK bool `json:"ok"`
	// Skipped is true when there is nothing to gate (gpu.mode none).
	Skipped bool `json:"skipped,omitempty"`
	// Driver is the installed driver version as NVML reports it.
	Driver string `json:"driver,omitempty"`
	// DriverCUDA is the newest CUDA release the driver supports ("13.0").
	DriverCUDA string `json:"driver_cuda,omitempty"`
	// MinDriver is the configured floor (gpu.min_driver).
	MinDriver string `json:"min_driver"`
	// ImageCUDA is the image's CUDA release when known ("13.0").
	ImageCUDA string `json:"image_cuda,omitempty"`
	// CUDAMinDriver is the driver the image's CUDA release needs, from
	// the table; empty when the image's CUDA is unknown or not listed.
	CUDAMinDriver string `json:"cuda_min_driver,omitempty"`
	// Required is the driver the host needs for this verdict to pass:
	// the higher of MinDriver and CUDAMinDriver (MinDriver alone under
	// forward compatibility).
	Required string `json:"required"`
	// ForwardCompat is true when the gate passed only because forward
	// compatibility is allowed.
	ForwardCompat bool `json:"forward_compat,omitempty"`
	// Message says what was found against what is needed and, on
	// failure, what to do.
	Message string `json:"message"`
	// Hint names the other ways out of a failure.
	Hint string `json:"hint,omitempty"`
	// Warnings are facts worth knowing that do not fail the gate.
	Warnings []string `json:"warnings,omitempty"`
}

// Err returns nil for a passing verdict and a *GateError otherwise.
func (v Verdict) Err() error {
	if v.OK {
		return nil
	}
	return &GateError{Verdict: v}
}

// GateError is a failed driver gate. It is a failed precondition: the host
// must change (driver, config or image) before the session can run.
type GateError struct {
	Verdict Verdict
}

func (e *GateError) Error() string { return e.Verdict.Message }

// Hint names the alternatives to the action the message gives; the API
// server and the CLI show it as the error's hint.
func (e *GateError) Hint() string { return e.Verdict.Hint }

// Unwrap classifies the error as errdefs.ErrFailedPrecondition.
func (e *GateError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// Evaluate runs the driver gate. driver is the installed driver version,
// driverCUDA NVML's CUDA driver version integer (13000 for 13.0; 0 when
// unknown) and imageCUDA the image's CUDA version as declared ("13.0.2",
// "CUDA_VERSION=12.8.1"; "" when unknown).
//
// The driver must be at least p.MinDriver. When the image's CUDA release
// is known it must also be at least what the table lists for that release,
// unless p.AllowForwardCompat. CUDA releases missing from the table are
// checked against the CUDA version the driver reports instead. An image
// CUDA version that cannot be parsed only warns: the image, not the host,
// is odd, and the configured floor still applies.
func Evaluate(p Policy, driver string, driverCUDA int, imageCUDA string) Verdict {
	if p.MinDriver == "" {
		p.MinDriver = DefaultMinDriver
	}
	v := Verdict{Driver: driver, MinDriver: p.MinDriver, Required: p.MinDriver}
	if dc := CUDADriverVersion(driverCUDA); dc != (CUDAVersion{}) {
		v.DriverCUDA = dc.String()
	}
	floor, err := ParseVersion(p.MinDriver)
	if err != nil {
		v.Message = fmt.Sprintf("gpu.min_driver %q is not a dotted driver version", p.MinDriver)
		v.Hint = `set gpu.min_driver to a version such as "570" or "580.65.06"`
		return v
	}
	have, err := ParseVersion(driver)
	if err != nil {
		v.Message = fmt.Sprintf("the NVIDIA driver reports version %q, which is not a dotted number, so it cannot be checked against %s", driver, p.MinDriver)
		v.Hint = "check `nvidia-smi`; the driver installation may be broken"
		return v
	}
	if !have.AtLeast(floor) {
		v.Message = fmt.Sprintf("NVIDIA driver %s is too old: gpu.min_driver needs >= %s; upgrade the NVIDIA driver to %s or newer", driver, p.MinDriver, p.MinDriver)
		v.Hint = "lower gpu.min_driver only if you know the image runs on this driver"
		return v
	}
	v.OK = true
	v.Message = fmt.Sprintf("NVIDIA driver %s meets gpu.min_driver >= %s", driver, p.MinDriver)
	if imageCUDA == "" {
		return v
	}
	cuda, err := ParseCUDAVersion(imageCUDA)
	if err != nil {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%v; only gpu.min_driver was checked", err))
		return v
	}
	v.ImageCUDA = cuda.String()
	older := fmt.Sprintf("an image built for CUDA %s or older", v.DriverCUDA)
	if v.DriverCUDA == "" {
		older = "an image built for an older CUDA release"
	}
	fwdHint := "set gpu.allow_forward_compat: true if the image carries the CUDA forward-compatibility package (datacenter GPUs only)"

	if need, listed := MinDriverForCUDA(cuda); listed {
		v.CUDAMinDriver = need
		needV := MustParseVersion(need)
		if have.AtLeast(needV) {
			if needV.Compare(floor) > 0 {
				v.Required = need
			}
			v.Message = fmt.Sprintf("NVIDIA driver %s meets gpu.min_driver >= %s and the image's CUDA %s (needs >= %s)", driver, p.MinDriver, v.ImageCUDA, need)
			return v
		}
		if p.AllowForwardCompat {
			v.ForwardCompat = true
			v.Message = fmt.Sprintf("NVIDIA driver %s meets gpu.min_driver >= %s; the image's CUDA %s needs >= %s, allowed through forward compatibility", driver, p.MinDriver, v.ImageCUDA, need)
			v.Warnings = append(v.Warnings, fmt.Sprintf("driver %s is below CUDA %s's %s: the image must carry the CUDA forward-compatibility package and the GPU must be a datacenter GPU", driver, v.ImageCUDA, need))
			return v
		}
		v.OK, v.Required = false, need
		v.Message = fmt.Sprintf("NVIDIA driver %s is too old for the image's CUDA %s, which needs >= %s; upgrade the NVIDIA driver to %s or newer", driver, v.ImageCUDA, need, need)
		v.Hint = fmt.Sprintf("or use %s, or %s", older, fwdHint)
		return v
	}

	// Not in the table (a release newer than this build knows, or an old
	// one): the driver's own CUDA version still says whether it can run it.
	if v.DriverCUDA == "" {
		v.Warnings = append(v.Warnings, fmt.Sprintf("CUDA %s is not in sglangd's driver table and the driver reports no CUDA version; only gpu.min_driver was checked", v.ImageCUDA))
		return v
	}
	if !CUDADriverVersion(driverCUDA).Less(cuda) {
		v.Message = fmt.Sprintf("NVIDIA driver %s meets gpu.min_driver >= %s and supports CUDA %s, enough for the image's CUDA %s", driver, p.MinDriver, v.DriverCUDA, v.ImageCUDA)
		return v
	}
	if p.AllowForwardCompat {
		v.ForwardCompat = true
		v.Message = fmt.Sprintf("NVIDIA driver %s supports CUDA %s, below the image's CUDA %s; allowed through forward compatibility", driver, v.DriverCUDA, v.ImageCUDA)
		v.Warnings = append(v.Warnings, fmt.Sprintf("the image's CUDA %s is newer than the driver's CUDA %s: the image must carry the CUDA forward-compatibility package", v.ImageCUDA, v.DriverCUDA))
		return v
	}
	v.OK = false
	v.Message = fmt.Sprintf("NVIDIA driver %s supports CUDA up to %s but the image needs CUDA %s; upgrade the NVIDIA driver to one that supports CUDA %s", driver, v.DriverCUDA, v.ImageCUDA, v.ImageCUDA)
	v.Hint = fmt.Sprintf("or use %s, or %s", older, fwdHint)
	return v
}
