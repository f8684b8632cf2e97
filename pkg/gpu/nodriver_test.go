package gpu

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/dl"
	"github.com/containerd/errdefs"
)

// skipIfDriver skips when the real NVML library loads here: the test is
// about machines without it (this development machine, CI).
func skipIfDriver(t *testing.T, lib string) {
	t.Helper()
	l := dl.New(lib, dl.RTLD_LAZY|dl.RTLD_GLOBAL)
	if l.Open() == nil {
		_ = l.Close()
		t.Skipf("%s loads on this machine; the no-driver path needs a machine without the NVIDIA driver", lib)
	}
}

// The real go-nvml library, with no driver installed: every GPU action
// fails with the loader's own message, and the manager itself (and so the
// daemon) keeps working.
func TestNoDriver(t *testing.T) {
	tests := []struct {
		name, path, want string
	}{
		{name: "default", path: "",
			want: "NVIDIA driver not found (libnvidia-ml.so.1): libnvidia-ml.so.1: cannot open shared object file: No such file or directory"},
		{name: "library_path", path: "/nonexistent/lib/libnvidia-ml.so.1",
			want: "NVIDIA driver not found (/nonexistent/lib/libnvidia-ml.so.1): /nonexistent/lib/libnvidia-ml.so.1: cannot open shared object file: No such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lib := tt.path
			if lib == "" {
				lib = DefaultLibrary
			}
			skipIfDriver(t, lib)
			ctx := context.Background()
			m, err := New(Options{LibraryPath: tt.path})
			if err != nil {
				t.Fatalf("New without a driver: %v; the daemon must still start", err)
			}
			defer m.Close()
			_, invErr := m.Inventory(ctx)
			_, gateErr := m.Gate(ctx, "13.0")
			_, allocErr := m.Allocate(ctx, Request{Session: "s1", Count: 1})
			_, telErr := m.Telemetry(ctx, TelemetryOptions{UUIDs: []string{"GPU-1"}, Writer: &bytes.Buffer{}})
			for name, err := range map[string]error{"Inventory": invErr, "Gate": gateErr, "Allocate": allocErr, "Telemetry": telErr} {
				if err == nil || err.Error() != tt.want {
					t.Errorf("%s error = %v\nwant %s", name, err, tt.want)
					continue
				}
				var dnf *DriverNotFoundError
				if !errors.As(err, &dnf) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Errorf("%s: %v is not a failed-precondition DriverNotFoundError", name, err)
				}
				if dnf != nil && dnf.Hint() == "" {
					t.Errorf("%s: no hint", name)
				}
			}
			if err := m.Close(); err != nil {
				t.Errorf("Close after failed opens: %v", err)
			}
		})
	}
}

// gpu.mode: none never touches NVML and gives sessions no GPUs.
func TestModeNone(t *testing.T) {
	ctx := context.Background()
	m, err := New(Options{Mode: ModeNone, LibraryPath: "/nonexistent/libnvidia-ml.so.1"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := m.Inventory(ctx)
	if err != nil || inv.Mode != ModeNone || len(inv.GPUs) != 0 || inv.GPUs == nil || !inv.Gate.OK || !inv.Gate.Skipped {
		t.Fatalf("Inventory = %+v, %v; want mode none, an empty GPU list and a skipped gate", inv, err)
	}
	if v, err := m.Gate(ctx, "13.0"); err != nil || !v.OK || !v.Skipped {
		t.Errorf("Gate = %+v, %v; want OK and skipped", v, err)
	}
	a, err := m.Allocate(ctx, Request{Session: "sim-1", Count: 4})
	if err != nil || a.Session != "sim-1" || len(a.UUIDs) != 0 || a.UUIDs == nil {
		t.Fatalf("Allocate = %+v, %v; want an empty allocation", a, err)
	}
	if _, err := m.Allocate(ctx, Request{Session: "sim-1", Count: 1}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second Allocate for sim-1 = %v; want already exists", err)
	}
	if _, err := m.Allocate(ctx, Request{Session: "sim-2", Devices: []string{"0"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Allocate naming GPUs in mode none = %v; want invalid argument", err)
	}
	if _, err := m.Allocate(ctx, Request{Session: "sim-3", Count: 0}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Allocate of 0 GPUs = %v; want invalid argument even in mode none", err)
	}
	var buf bytes.Buffer
	sum, err := m.Telemetry(ctx, TelemetryOptions{UUIDs: a.UUIDs, Writer: &buf, Format: FormatCSV})
	if err != nil || len(sum.GPUs) != 0 || buf.String() != "time,index,uuid,utilization_percent,memory_utilization_percent,memory_used_bytes,memory_total_bytes,power_watts,temperature_celsius,sm_clock_mhz,throttle_reasons,throttle,unavailable,error\n" {
		t.Errorf("Telemetry with no GPUs = %+v, %v, %q; want an immediate return with only the CSV header", sum, err, buf.String())
	}
	if got, ok := m.Release("sim-1"); !ok || got.Session != "sim-1" {
		t.Errorf("Release = %+v, %v", got, ok)
	}
}

func TestNew_BadOptions(t *testing.T) {
	if _, err := New(Options{Mode: "cuda"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("mode cuda: %v", err)
	}
	if _, err := New(Options{Policy: Policy{MinDriver: "5x0"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("min driver 5x0: %v", err)
	}
}
