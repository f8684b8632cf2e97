package gpu

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// cudaDriverTable is the one place that knows which Linux x86_64 driver
// each CUDA release needs. Source: "CUDA Toolkit and Corresponding Driver
// Versions" in NVIDIA's CUDA Toolkit release notes (the "Toolkit Driver
// Version" column, GA release of each minor version). Images built on a
// later update of the same minor (12.8 Update 1, 13.0.2) run on the GA
// driver through CUDA minor-version compatibility, so the GA floor is the
// right gate. Keep the entries sorted; add a row when NVIDIA ships a new
// minor version. CUDA versions missing here fall back to the CUDA version
// the driver itself reports (see requiredDriverForCUDA).
var cudaDriverTable = []struct {
	cuda   string // major.minor
	driver string // minimum driver, NVIDIA's spelling
}{
	{"12.0", "525.60.13"},
	{"12.1", "530.30.02"},
	{"12.2", "535.54.03"},
	{"12.3", "545.23.06"},
	{"12.4", "550.54.14"},
	{"12.5", "555.42.02"},
	{"12.6", "560.28.03"},
	{"12.8", "570.26"},
	{"12.9", "575.51.03"},
	{"13.0", "580.65.06"},
}

// CUDAVersion is a CUDA release reduced to what decides the driver it
// needs: major and minor.
type CUDAVersion struct {
	Major, Minor uint64
}

// String prints "13.0".
func (c CUDAVersion) String() string { return fmt.Sprintf("%d.%d", c.Major, c.Minor) }

// Less orders CUDA versions.
func (c CUDAVersion) Less(d CUDAVersion) bool {
	return c.Major < d.Major || (c.Major == d.Major && c.Minor < d.Minor)
}

// ParseCUDAVersion reads the CUDA version an image declares, as found in
// its CUDA_VERSION environment variable or com.nvidia.cuda.version label:
// "13.0.2", "12.8.1.012", "12.8", a whole "CUDA_VERSION=13.0.2" entry, or
// with a "v" or "cuda" prefix. Only major and minor are kept.
func ParseCUDAVersion(s string) (CUDAVersion, error) {
	t := strings.TrimSpace(s)
	if k, v, ok := strings.Cut(t, "="); ok && strings.EqualFold(strings.TrimSpace(k), cudaEnv) {
		t = strings.TrimSpace(v)
	}
	low := strings.ToLower(t)
	for _, p := range []string{"cuda-", "cuda", "v"} {
		if strings.HasPrefix(low, p) {
			t = t[len(p):]
			break
		}
	}
	v, err := ParseVersion(t)
	if err != nil || len(v) < 2 {
		return CUDAVersion{}, fmt.Errorf("image CUDA version %q: %w: expected major.minor such as 12.8 or 13.0.2 (from the image's CUDA_VERSION)", s, errdefs.ErrInvalidArgument)
	}
	return CUDAVersion{Major: v[0], Minor: v[1]}, nil
}

// CUDADriverVersion converts NVML's CUDA driver version integer (13000)
// into a CUDAVersion (13.0); zero means unknown.
func CUDADriverVersion(n int) CUDAVersion {
	if n <= 0 {
		return CUDAVersion{}
	}
	return CUDAVersion{Major: uint64(n / 1000), Minor: uint64(n%1000) / 10}
}

// cudaEnv and cudaLabel are where images declare their CUDA version:
// NVIDIA's CUDA base images (and everything built on them, SGLang's
// included) set the environment variable; NGC images also set the label.
const (
	cudaEnv   = "CUDA_VERSION"
	cudaLabel = "com.nvidia.cuda.version"
)

// ImageCUDAVersion returns the CUDA version an image declares in its
// config: the CUDA_VERSION environment entry, else the
// com.nvidia.cuda.version label; "" when it declares none.
func ImageCUDAVersion(labels map[string]string, env []string) string {
	for _, e := range env {
		if k, v, ok := strings.Cut(e, "="); ok && k == cudaEnv && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return strings.TrimSpace(labels[cudaLabel])
}

// MinDriverForCUDA returns the minimum driver the table lists for a CUDA
// release (major.minor), with NVIDIA's spelling, and whether it is listed.
func MinDriverForCUDA(c CUDAVersion) (string, bool) {
	for _, row := range cudaDriverTable {
		if row.cuda == c.String() {
			return row.driver, true
		}
	}
	return "", false
}
