// Package gpu is sglangd's view of the host's NVIDIA GPUs, read through
// NVML (github.com/NVIDIA/go-nvml): the driver gate that runs before a
// session moves any data, the inventory behind `sglangctl gpu list`, the
// allocation of GPUs to sessions, and telemetry sampled while a session
// profiles.
//
// NVML is opened lazily, on the first call that needs it, by dlopen of
// libnvidia-ml.so.1 (go-nvml is cgo; the binary must not be linked with
// -z now). Without a driver the daemon still starts: every GPU call then
// fails with a *DriverNotFoundError, "NVIDIA driver not found
// (libnvidia-ml.so.1): <loader message>", classified as a failed
// precondition. A failed open is retried on the next call, so installing
// the driver needs no restart.
//
// With Mode "none" (gpu.mode: none, the simulator demo) there is no NVML
// at all: the inventory is empty, the gate is skipped, every allocation
// succeeds with zero GPUs - sessions then run their container without
// device requests - and telemetry records nothing.
//
// Code talks to nvml.Interface, so tests run against go-nvml's mock
// (pkg/nvml/mock/dgxh100).
package gpu

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Modes of operation.
const (
	// ModeNVML uses the real GPUs through the NVIDIA driver.
	ModeNVML = "nvml"
	// ModeNone runs without GPUs: sessions get none.
	ModeNone = "none"
)

// DefaultTelemetryInterval is the sampling period when none is set.
const DefaultTelemetryInterval = time.Second

// Options configure a Manager.
type Options struct {
	// Mode is ModeNVML (default) or ModeNone.
	Mode string
	// LibraryPath is what dlopen loads; empty means DefaultLibrary from
	// the loader path.
	LibraryPath string
	// Policy is the driver gate's.
	Policy Policy
	// AllowForeignProcesses lets automatic allocation pick, and explicit
	// allocation accept, GPUs running compute processes that no sglangd
	// session holds.
	AllowForeignProcesses bool
	// TelemetryInterval is the default sampling period (1s when zero).
	TelemetryInterval time.Duration
	// Logger receives the manager's logs; nil discards them.
	Logger *zap.Logger
	// Registerer receives the telemetry gauges; nil keeps them private.
	Registerer prometheus.Registerer
	// NVML replaces the system library (tests pass go-nvml's mock).
	// LibraryPath then only names the library in messages.
	NVML nvml.Interface
	// Now is the clock for allocation and sample times; nil is time.Now.
	Now func() time.Time
}

// Manager owns NVML for the daemon. It is safe for concurrent use.
type Manager struct {
	opts    Options
	log     *zap.Logger
	library string
	metrics *metrics

	initMu sync.Mutex
	lib    nvml.Interface // nil until Init succeeded
	syms   symbols
	closed bool

	mu     sync.Mutex
	holder map[string]string      // GPU UUID -> session ID
	allocs map[string]*Allocation // session ID -> allocation
}

// New returns a manager; it does not touch NVML yet. It fails only on bad
// options or when the gauges cannot be registered.
func New(opts Options) (*Manager, error) {
	switch opts.Mode {
	case "":
		opts.Mode = ModeNVML
	case ModeNVML, ModeNone:
	default:
		return nil, fmt.Errorf("gpu mode %q: %w: expected %q or %q", opts.Mode, errdefs.ErrInvalidArgument, ModeNVML, ModeNone)
	}
	if opts.Policy.MinDriver == "" {
		opts.Policy.MinDriver = DefaultMinDriver
	}
	if _, err := ParseVersion(opts.Policy.MinDriver); err != nil {
		return nil, fmt.Errorf("min driver: %w", err)
	}
	if opts.TelemetryInterval <= 0 {
		opts.TelemetryInterval = DefaultTelemetryInterval
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Manager{
		opts:    opts,
		log:     opts.Logger.Named("gpu"),
		library: opts.LibraryPath,
		holder:  map[string]string{},
		allocs:  map[string]*Allocation{},
	}
	if m.library == "" {
		m.library = DefaultLibrary
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	m.metrics = met
	return m, nil
}

// Mode returns ModeNVML or ModeNone.
func (m *Manager) Mode() string { return m.opts.Mode }

// Policy returns the driver gate's policy.
func (m *Manager) Policy() Policy { return m.opts.Policy }

// Close shuts NVML down if it was opened; later GPU calls fail as
// unavailable instead of opening it again.
func (m *Manager) Close() error {
	m.initMu.Lock()
	defer m.initMu.Unlock()
	m.closed = true
	if m.lib == nil {
		return nil
	}
	ret := m.lib.Shutdown()
	m.lib = nil
	if ret != nvml.SUCCESS {
		return nvmlError("NVML shutdown", ret)
	}
	return nil
}

// nvml opens NVML on first use and returns it with the symbols the driver
// has. Mode none has no NVML: callers handle that mode first.
func (m *Manager) nvml(ctx context.Context) (nvml.Interface, symbols, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	m.initMu.Lock()
	defer m.initMu.Unlock()
	if m.lib != nil {
		return m.lib, m.syms, nil
	}
	if m.closed {
		return nil, nil, fmt.Errorf("gpu manager is closed: %w", errdefs.ErrUnavailable)
	}
	lib := m.opts.NVML
	if lib == nil {
		var opts []nvml.LibraryOption
		if m.opts.LibraryPath != "" {
			opts = append(opts, nvml.WithLibraryPath(m.opts.LibraryPath))
		}
		lib = nvml.New(opts...)
	}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		err := initError(m.library, ret)
		m.log.Debug("NVML unavailable", zap.String("library", m.library), zap.Error(err))
		return nil, nil, err
	}
	m.lib, m.syms = lib, probeSymbols(lib)
	var missing []string
	for name, ok := range m.syms {
		if !ok {
			missing = append(missing, name)
		}
	}
	drv, _ := lib.SystemGetDriverVersion()
	m.log.Info("NVML opened", zap.String("library", m.library), zap.String("driver", drv), zap.Strings("missing_symbols", missing))
	return m.lib, m.syms, nil
}

// DriverInfo describes the installed driver.
type DriverInfo struct {
	// Version is the driver version ("580.159.04").
	Version string `json:"version"`
	// NVMLVersion is NVML's own version ("13.580.159.04").
	NVMLVersion string `json:"nvml_version,omitempty"`
	// CUDAVersion is the newest CUDA release the driver supports ("13.0").
	CUDAVersion string `json:"cuda_version,omitempty"`
	// CUDAVersionInt is NVML's raw CUDA driver version (13000).
	CUDAVersionInt int `json:"cuda_version_int,omitempty"`
}

// Driver reads the installed driver's versions.
func (m *Manager) Driver(ctx context.Context) (DriverInfo, error) {
	if m.opts.Mode == ModeNone {
		return DriverInfo{}, nil
	}
	lib, syms, err := m.nvml(ctx)
	if err != nil {
		return DriverInfo{}, err
	}
	return readDriver(lib, syms)
}

func readDriver(lib nvml.Interface, syms symbols) (DriverInfo, error) {
	var info DriverInfo
	v, ret := lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return info, nvmlError("read driver version", ret)
	}
	info.Version = v
	if nv, ret := lib.SystemGetNVMLVersion(); ret == nvml.SUCCESS {
		info.NVMLVersion = nv
	}
	if syms[symCUDADriver] {
		if c, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
			info.CUDAVersionInt = c
			if cv := CUDADriverVersion(c); cv != (CUDAVersion{}) {
				info.CUDAVersion = cv.String()
			}
		}
	}
	return info, nil
}

// Gate runs the driver gate for an image whose CUDA version is imageCUDA
// ("" when unknown). It returns the verdict and, when the gate fails, a
// *GateError (errdefs.ErrFailedPrecondition) saying found vs needed and
// what to do; without a driver, a *DriverNotFoundError and no verdict.
// In mode none the verdict is OK and Skipped.
func (m *Manager) Gate(ctx context.Context, imageCUDA string) (Verdict, error) {
	if m.opts.Mode == ModeNone {
		return Verdict{OK: true, Skipped: true, MinDriver: m.opts.Policy.MinDriver, Required: m.opts.Policy.MinDriver,
			Message: "gpu.mode is none: no driver to check, sessions run without GPUs"}, nil
	}
	d, err := m.Driver(ctx)
	if err != nil {
		return Verdict{}, err
	}
	v := Evaluate(m.opts.Policy, d.Version, d.CUDAVersionInt, imageCUDA)
	return v, v.Err()
}
