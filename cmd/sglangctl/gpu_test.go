package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"go.yaml.in/yaml/v3"

	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/api/server"
)

type stubGPUs struct {
	list  func(cuda string) *api.GPUList
	err   error
	asked string
}

func (s *stubGPUs) GPUs(_ context.Context, cuda string) (*api.GPUList, error) {
	s.asked = cuda
	if s.err != nil {
		return nil, s.err
	}
	return s.list(cuda), nil
}

// noDriverErr has the shape of gpu.DriverNotFoundError: its own message,
// a hint, and the failed-precondition class.
type noDriverErr struct{}

func (noDriverErr) Error() string {
	return "NVIDIA driver not found (libnvidia-ml.so.1): libnvidia-ml.so.1: cannot open shared object file: No such file or directory"
}
func (noDriverErr) Hint() string  { return "install the NVIDIA driver (>= 570) or set gpu.mode: none" }
func (noDriverErr) Unwrap() error { return errdefs.ErrFailedPrecondition }

// runCLI runs sglangctl against an in-process daemon API with b behind it.
func runCLI(t *testing.T, b server.GPUBackend, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	srv, err := server.New(server.Options{GPUs: b})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler(false))
	defer hs.Close()
	var out, errb bytes.Buffer
	code = cliutil.Execute(context.Background(), newRootCmd(&out, &errb), append([]string{"--host", hs.URL}, args...), &errb)
	return code, out.String(), errb.String()
}

func twoH200(cuda string) *api.GPUList {
	l := &api.GPUList{Mode: "nvml", Driver: api.GPUDriver{Version: "580.159.04", NVMLVersion: "13.580.159.04", CUDAVersion: "13.0"},
		Gate: api.GPUGate{OK: true, Driver: "580.159.04", MinDriver: "570", Required: "570", Message: "NVIDIA driver 580.159.04 meets gpu.min_driver >= 570"},
		GPUs: []api.GPU{
			{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA H200", MemoryTotalBytes: 150754820096, MemoryUsedBytes: 3 << 30,
				UtilizationPercent: 97, PowerWatts: 612.4, TemperatureCelsius: 61, SMClockMHz: 1980, Session: "s-42",
				Processes: []api.GPUProcess{{PID: 9, Name: "python3"}}},
			{Index: 1, UUID: "GPU-bbbb", Name: "NVIDIA H200", MemoryTotalBytes: 150754820096, Foreign: true,
				Processes: []api.GPUProcess{{PID: 4242, Name: "jupyter", UsedMemoryBytes: 1 << 30}}},
		}}
	if cuda == "14.0" {
		l.Gate.OK, l.Gate.ImageCUDA = false, "14.0"
		l.Gate.Message = "NVIDIA driver 580.159.04 supports CUDA up to 13.0 but the image needs CUDA 14.0; upgrade the NVIDIA driver"
		l.Gate.Hint = "or set gpu.allow_forward_compat: true"
	}
	return l
}

func TestGPUList_Table(t *testing.T) {
	b := &stubGPUs{list: twoH200}
	code, out, errOut := runCLI(t, b, "gpu", "list")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{
		"Driver 580.159.04 (CUDA 13.0), gate ok: NVIDIA driver 580.159.04 meets gpu.min_driver >= 570",
		"INDEX", "SESSION",
		"GPU-aaaa", "3.0 GiB / 140.4 GiB", "97%", "612 W", "61 °C", "1980 MHz", "s-42",
		"1 foreign (4242 jupyter)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[3], "0 ") || !strings.HasPrefix(lines[4], "1 ") {
		t.Errorf("want header, blank, column titles and one row per GPU; got:\n%s", out)
	}
}

func TestGPUList_JSONAndYAML(t *testing.T) {
	b := &stubGPUs{list: twoH200}
	code, out, _ := runCLI(t, b, "gpu", "ls", "-o", "json", "--cuda", "13.0.2")
	if code != 0 || b.asked != "13.0.2" {
		t.Fatalf("exit %d, daemon asked about CUDA %q", code, b.asked)
	}
	var l api.GPUList
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.GPUs) != 2 || l.GPUs[1].Processes[0].PID != 4242 {
		t.Fatalf("json = %v, %+v", err, l)
	}
	code, out, _ = runCLI(t, b, "gpu", "list", "-o", "yaml")
	var y map[string]any
	if err := yaml.Unmarshal([]byte(out), &y); code != 0 || err != nil || y["mode"] != "nvml" {
		t.Fatalf("yaml: exit %d, %v, %v", code, err, y)
	}
}

func TestGPUList_Failures(t *testing.T) {
	// Gate fails for the image's CUDA: the table explains, exit code 1.
	code, out, _ := runCLI(t, &stubGPUs{list: twoH200}, "gpu", "list", "--cuda", "14.0")
	if code != cliutil.ExitFailure || !strings.Contains(out, "gate FAIL: NVIDIA driver 580.159.04 supports CUDA up to 13.0") ||
		!strings.Contains(out, "hint: or set gpu.allow_forward_compat: true") {
		t.Errorf("gate failure: exit %d\n%s", code, out)
	}
	code, _, errOut := runCLI(t, &stubGPUs{list: twoH200}, "gpu", "list", "--cuda", "14.0", "-o", "json")
	if code != cliutil.ExitFailure || !strings.HasPrefix(errOut, "Error: NVIDIA driver 580.159.04 supports CUDA up to 13.0") {
		t.Errorf("gate failure with -o json: exit %d, stderr %q", code, errOut)
	}

	// No driver on the daemon's host: the error and its hint, exit code 1.
	code, out, errOut = runCLI(t, &stubGPUs{err: noDriverErr{}}, "gpu", "list")
	want := "Error: NVIDIA driver not found (libnvidia-ml.so.1): libnvidia-ml.so.1: cannot open shared object file: No such file or directory\n" +
		"Hint: install the NVIDIA driver (>= 570) or set gpu.mode: none\n"
	if code != cliutil.ExitFailure || out != "" || errOut != want {
		t.Errorf("no driver: exit %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
	}

	// gpu.mode: none.
	code, out, _ = runCLI(t, &stubGPUs{list: func(string) *api.GPUList {
		return &api.GPUList{Mode: "none", Gate: api.GPUGate{OK: true, Skipped: true}, GPUs: []api.GPU{}}
	}}, "gpu", "list")
	if code != 0 || !strings.Contains(out, "gpu.mode is none") {
		t.Errorf("mode none: exit %d\n%s", code, out)
	}
}
