package gpu

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sglangd/sglangd/pkg/gpu/gputest"
)

// driveTelemetry runs Telemetry with a tick channel and calls step after
// each sample; step returns false to stop sampling.
func driveTelemetry(t *testing.T, m *Manager, opts TelemetryOptions, step func(n int, samples []Sample) bool) (TelemetrySummary, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ticks := make(chan time.Time)
	got := make(chan []Sample)
	opts.Ticks = ticks
	opts.OnSample = func(s []Sample) { got <- s }
	type result struct {
		sum TelemetrySummary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := m.Telemetry(ctx, opts)
		done <- result{sum, err}
	}()
	for n := 1; ; n++ {
		var samples []Sample
		select {
		case samples = <-got:
		case r := <-done:
			return r.sum, r.err
		case <-time.After(10 * time.Second):
			t.Fatal("no sample within 10s")
		}
		if !step(n, samples) {
			cancel()
			break
		}
		ticks <- time.Time{}
	}
	r := <-done
	return r.sum, r.err
}

func TestManager_Telemetry(t *testing.T) {
	h := newFakeHost(t, 4, "580.159.04", 13000)
	m, reg, clk := newTestManager(t, h, Options{})
	uuids := []string{h.UUID(2), h.UUID(0)}
	var buf bytes.Buffer

	sum, err := driveTelemetry(t, m, TelemetryOptions{UUIDs: uuids, Writer: &buf}, func(n int, s []Sample) bool {
		if len(s) != 2 || s[0].UUID != h.UUID(2) || s[0].Index != 2 || s[1].Index != 0 || !s[0].Time.Equal(clk.Now()) {
			t.Fatalf("sample %d = %+v", n, s)
		}
		switch n {
		case 1: // idle
			if s[0].UtilizationPercent != 0 || s[0].PowerWatts != 70 {
				t.Errorf("idle sample = %+v", s[0].Metrics)
			}
			h.Set(2, func(g *gputest.GPU) {
				g.Util, g.MemUtil, g.UsedBytes, g.PowerMW, g.TempC, g.SMMHz = 100, 55, 70<<30, 690_500, 66, 1755
				g.Throttle = nvml.ClocksEventReasonSwPowerCap
			})
		case 2: // busy: the gauges show the latest values
			l := prometheus.Labels{"uuid": h.UUID(2), "index": "2"}
			for name, want := range map[string]float64{
				"utilization_percent": 100, "memory_utilization_percent": 55, "memory_used_bytes": 70 << 30,
				"memory_total_bytes": 80 << 30, "power_watts": 690.5, "temperature_celsius": 66, "sm_clock_mhz": 1755, "throttle_reasons": 4,
			} {
				if got := gaugeValue(t, reg, "sglangd_gpu_"+name, l); got != want {
					t.Errorf("sglangd_gpu_%s = %v, want %v", name, got, want)
				}
			}
			h.Set(2, func(g *gputest.GPU) {
				g.Util, g.PowerMW, g.TempC, g.SMMHz, g.Throttle = 50, 400_000, 70, 1980, nvml.ClocksEventReasonSyncBoost
			})
		case 3:
			return false
		}
		clk.Advance(time.Second)
		return true
	})
	if err != nil {
		t.Fatalf("Telemetry ended with %v; the end of ctx is a normal stop", err)
	}

	// Rows: one JSON object per GPU and sample.
	var rows []Sample
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var s Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("row %q: %v", sc.Text(), err)
		}
		rows = append(rows, s)
	}
	if len(rows) != 6 {
		t.Fatalf("wrote %d rows, want 6 (3 samples × 2 GPUs)", len(rows))
	}
	if r := rows[2]; r.UUID != h.UUID(2) || r.UtilizationPercent != 100 || r.PowerWatts != 690.5 ||
		r.Throttle[0] != "sw_power_cap" || !r.Time.Equal(rows[0].Time.Add(time.Second)) {
		t.Errorf("busy row = %+v", r)
	}

	g := sum.GPUs[0]
	if len(sum.GPUs) != 2 || g.UUID != h.UUID(2) || g.Samples != 3 || g.UtilizationMaxPercent != 100 || g.UtilizationAvgPercent != 50 ||
		g.PowerMaxWatts != 690.5 || g.TemperatureMaxCelsius != 70 || g.SMClockMinMHz != 345 || g.SMClockMaxMHz != 1980 ||
		g.MemoryUsedMaxBytes != 70<<30 || g.ThrottleReasons != 1|4|16 {
		t.Errorf("summary = %+v", g)
	}
	if sum.Interval != time.Second || !sum.End.Equal(sum.Start.Add(2*time.Second)) {
		t.Errorf("summary interval %v start %v end %v", sum.Interval, sum.Start, sum.End)
	}
	// Sampling over: no stale gauges; the sample counter stays.
	if n := seriesCount(t, reg, "sglangd_gpu_utilization_percent"); n != 0 {
		t.Errorf("%d utilization series remain after sampling ended", n)
	}
	if got := gaugeValue(t, reg, "sglangd_gpu_telemetry_samples_total", prometheus.Labels{"uuid": h.UUID(0), "index": "0"}); got != 3 {
		t.Errorf("samples_total for gpu 0 = %v, want 3", got)
	}
}

func TestManager_Telemetry_CSVAndLostGPU(t *testing.T) {
	h := newFakeHost(t, 2, "580.159.04", 13000)
	m, reg, _ := newTestManager(t, h, Options{})
	var buf bytes.Buffer
	_, err := driveTelemetry(t, m, TelemetryOptions{UUIDs: []string{h.UUID(0), h.UUID(1)}, Writer: &buf, Format: FormatCSV},
		func(n int, s []Sample) bool {
			if n == 1 {
				h.Set(1, func(g *gputest.GPU) { g.Lost = true })
				return true
			}
			if s[1].Error == "" || !strings.Contains(s[1].Error, "GPU is lost") && !strings.Contains(s[1].Error, "ERROR_GPU_IS_LOST") {
				t.Errorf("lost GPU sample error = %q", s[1].Error)
			}
			if n := seriesCount(t, reg, "sglangd_gpu_power_watts"); n != 1 {
				t.Errorf("%d power series while gpu 1 is lost; want only gpu 0's", n)
			}
			return false
		})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || strings.Join(recs[0], ",") != strings.Join(csvHeader, ",") {
		t.Fatalf("CSV has %d records (want header + 4), header %q", len(recs), recs[0])
	}
	if row := recs[1]; row[1] != "0" || row[2] != h.UUID(0) || row[7] != "70.000" || row[8] != "30" || row[10] != "1" || row[11] != "gpu_idle" {
		t.Errorf("first row = %q", row)
	}
	if last := recs[4]; last[2] != h.UUID(1) || last[13] == "" {
		t.Errorf("lost GPU row = %q; want its error column set", last)
	}
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, errors.New("disk full")
	}
	w.n--
	return len(p), nil
}

func TestManager_Telemetry_WriteError(t *testing.T) {
	h := newFakeHost(t, 1, "580.159.04", 13000)
	m, _, _ := newTestManager(t, h, Options{})
	_, err := m.Telemetry(context.Background(), TelemetryOptions{UUIDs: []string{h.UUID(0)}, Writer: &failingWriter{n: 0}, Ticks: make(chan time.Time)})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Telemetry into a failing writer = %v; want the write error", err)
	}
	if _, err := m.Telemetry(context.Background(), TelemetryOptions{UUIDs: []string{"GPU-nope"}}); err == nil || !strings.Contains(err.Error(), "GPU-nope") {
		t.Errorf("unknown UUID = %v", err)
	}
	if _, err := m.Telemetry(context.Background(), TelemetryOptions{UUIDs: []string{h.UUID(0)}, Format: "xml"}); err == nil {
		t.Error("format xml accepted")
	}
}

// With the real ticker: a short interval produces samples on its own.
func TestManager_Telemetry_Interval(t *testing.T) {
	h := newFakeHost(t, 1, "580.159.04", 13000)
	m, _, _ := newTestManager(t, h, Options{TelemetryInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	sum, err := m.Telemetry(ctx, TelemetryOptions{UUIDs: []string{h.UUID(0)}, OnSample: func([]Sample) {
		if n++; n == 3 {
			cancel()
		}
	}})
	if err != nil || sum.GPUs[0].Samples != 3 || sum.Interval != 5*time.Millisecond {
		t.Errorf("Telemetry = %+v, %v; want 3 samples at 5ms", sum, err)
	}
}

func TestManager_TelemetryToFile(t *testing.T) {
	h := newFakeHost(t, 1, "580.159.04", 13000)
	m, _, _ := newTestManager(t, h, Options{})
	dir := t.TempDir()
	path := filepath.Join(dir, "gpu-telemetry.csv")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := m.TelemetryToFile(ctx, path, TelemetryOptions{UUIDs: []string{h.UUID(0)}, Ticks: make(chan time.Time),
		OnSample: func([]Sample) {
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 || entries[0].Name() == "gpu-telemetry.csv" {
				t.Errorf("while sampling the directory holds %v; want only a temporary file", entries)
			}
			cancel()
		}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(b), "time,index,uuid,") || strings.Count(string(b), "\n") != 2 {
		t.Errorf("file = %q, %v; want a CSV header and one row", b, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries after the rename, want 1", len(entries))
	}

	bad := filepath.Join(dir, "bad.jsonl")
	if _, err := m.TelemetryToFile(context.Background(), bad, TelemetryOptions{UUIDs: []string{"GPU-nope"}}); err == nil {
		t.Fatal("unknown GPU accepted")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed run left files behind: %d entries", len(entries))
	}
}

// gaugeValue reads a gauge or counter from the registry.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string, labels prometheus.Labels) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
