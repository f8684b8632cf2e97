package gpu

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/containerd/errdefs"
	"github.com/google/renameio/v2"
	"go.uber.org/zap"
)

// Format is how telemetry rows are written.
type Format string

// Telemetry formats.
const (
	// FormatJSONL writes one JSON object per GPU and sample, one a line.
	FormatJSONL Format = "jsonl"
	// FormatCSV writes a header line, then one row per GPU and sample.
	FormatCSV Format = "csv"
)

// FormatForPath picks the format from a file name: .csv is CSV, anything
// else JSON lines.
func FormatForPath(path string) Format {
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		return FormatCSV
	}
	return FormatJSONL
}

// Sample is one GPU's readings at one moment.
type Sample struct {
	Time  time.Time `json:"time"`
	Index int       `json:"index"`
	UUID  string    `json:"uuid"`
	Metrics
	// Throttle names the bits set in ThrottleReasons.
	Throttle []string `json:"throttle,omitempty"`
	// Unavailable lists readings that failed this time; they read zero.
	Unavailable []string `json:"unavailable,omitempty"`
	// Error is set when no reading worked (the GPU fell off the bus).
	Error string `json:"error,omitempty"`
}

// csvHeader names the CSV columns; csvRow must match it.
var csvHeader = []string{"time", "index", "uuid", "utilization_percent", "memory_utilization_percent",
	"memory_used_bytes", "memory_total_bytes", "power_watts", "temperature_celsius", "sm_clock_mhz",
	"throttle_reasons", "throttle", "unavailable", "error"}

func (s Sample) csvRow() []string {
	return []string{
		s.Time.UTC().Format(time.RFC3339Nano), strconv.Itoa(s.Index), s.UUID,
		strconv.FormatUint(uint64(s.UtilizationPercent), 10), strconv.FormatUint(uint64(s.MemoryUtilizationPercent), 10),
		strconv.FormatUint(s.MemoryUsedBytes, 10), strconv.FormatUint(s.MemoryTotalBytes, 10),
		strconv.FormatFloat(s.PowerWatts, 'f', 3, 64), strconv.FormatUint(uint64(s.TemperatureCelsius), 10),
		strconv.FormatUint(uint64(s.SMClockMHz), 10), strconv.FormatUint(s.ThrottleReasons, 10),
		strings.Join(s.Throttle, "|"), strings.Join(s.Unavailable, "|"), s.Error,
	}
}

// TelemetryOptions say what to sample and where to write it.
type TelemetryOptions struct {
	// UUIDs are the GPUs to sample, usually an Allocation's.
	UUIDs []string
	// Interval is the sampling period; zero is the manager's default
	// (gpu.telemetry_interval).
	Interval time.Duration
	// Format of the rows written to Writer; empty is FormatJSONL.
	Format Format
	// Writer receives the rows; each sample of all GPUs arrives in one
	// Write call. Nil keeps only the gauges and the summary.
	Writer io.Writer
	// Ticks replaces the interval ticker (tests drive sampling with it).
	Ticks <-chan time.Time
	// OnSample, if set, sees every sample of all GPUs after it is written.
	OnSample func([]Sample)
}

// GPUSummary condenses one GPU's samples for a session report.
type GPUSummary struct {
	Index                 int     `json:"index"`
	UUID                  string  `json:"uuid"`
	Samples               int     `json:"samples"`
	Errors                int     `json:"errors"`
	UtilizationAvgPercent float64 `json:"utilization_avg_percent"`
	UtilizationMaxPercent uint32  `json:"utilization_max_percent"`
	MemoryUsedMaxBytes    uint64  `json:"memory_used_max_bytes"`
	PowerAvgWatts         float64 `json:"power_avg_watts"`
	PowerMaxWatts         float64 `json:"power_max_watts"`
	TemperatureMaxCelsius uint32  `json:"temperature_max_celsius"`
	SMClockMinMHz         uint32  `json:"sm_clock_min_mhz"`
	SMClockMaxMHz         uint32  `json:"sm_clock_max_mhz"`
	// ThrottleReasons ORs every sample's mask: anything that throttled
	// the GPU at any point.
	ThrottleReasons uint64   `json:"throttle_reasons"`
	Throttle        []string `json:"throttle,omitempty"`

	utilSum, powerSum float64
	good              int
}

func (g *GPUSummary) add(s Sample) {
	g.Samples++
	if s.Error != "" {
		g.Errors++
		return
	}
	g.good++
	g.utilSum += float64(s.UtilizationPercent)
	g.powerSum += s.PowerWatts
	g.UtilizationAvgPercent = g.utilSum / float64(g.good)
	g.PowerAvgWatts = g.powerSum / float64(g.good)
	g.UtilizationMaxPercent = max(g.UtilizationMaxPercent, s.UtilizationPercent)
	g.MemoryUsedMaxBytes = max(g.MemoryUsedMaxBytes, s.MemoryUsedBytes)
	g.PowerMaxWatts = max(g.PowerMaxWatts, s.PowerWatts)
	g.TemperatureMaxCelsius = max(g.TemperatureMaxCelsius, s.TemperatureCelsius)
	if s.SMClockMHz > 0 && (g.SMClockMinMHz == 0 || s.SMClockMHz < g.SMClockMinMHz) {
		g.SMClockMinMHz = s.SMClockMHz
	}
	g.SMClockMaxMHz = max(g.SMClockMaxMHz, s.SMClockMHz)
	g.ThrottleReasons |= s.ThrottleReasons
	g.Throttle = ThrottleNames(g.ThrottleReasons)
}

// TelemetrySummary is what Telemetry returns when sampling ends.
type TelemetrySummary struct {
	Interval time.Duration `json:"-"`
	// IntervalSeconds is Interval for JSON readers.
	IntervalSeconds float64      `json:"interval_seconds"`
	Start           time.Time    `json:"start"`
	End             time.Time    `json:"end"`
	GPUs            []GPUSummary `json:"gpus"`
}

type sampledGPU struct {
	dev   nvml.Device
	uuid  string
	index int
}

// Telemetry samples the given GPUs once at start and then every interval
// until ctx ends, writing rows to opts.Writer and keeping the gauges
// current. The end of ctx is the normal way to stop and returns a nil
// error with the summary; a failed write stops sampling with that error.
// A reading that fails is recorded in its row, not returned. With no
// GPUs (mode none) it returns at once with an empty summary, having
// written only the CSV header.
func (m *Manager) Telemetry(ctx context.Context, opts TelemetryOptions) (TelemetrySummary, error) {
	if opts.Interval <= 0 {
		opts.Interval = m.opts.TelemetryInterval
	}
	if opts.Format == "" {
		opts.Format = FormatJSONL
	}
	if opts.Format != FormatJSONL && opts.Format != FormatCSV {
		return TelemetrySummary{}, fmt.Errorf("telemetry format %q: %w: expected %q or %q", opts.Format, errdefs.ErrInvalidArgument, FormatJSONL, FormatCSV)
	}
	sum := TelemetrySummary{Interval: opts.Interval, IntervalSeconds: opts.Interval.Seconds(), Start: m.opts.Now(), GPUs: []GPUSummary{}}
	w := &rowWriter{w: opts.Writer, format: opts.Format}
	if err := w.header(); err != nil {
		return sum, err
	}
	if len(opts.UUIDs) == 0 {
		sum.End = sum.Start
		return sum, nil
	}
	if m.opts.Mode == ModeNone {
		return sum, fmt.Errorf("telemetry for %s: %w: gpu.mode is none, there are no GPUs", strings.Join(opts.UUIDs, ","), errdefs.ErrInvalidArgument)
	}
	lib, syms, err := m.nvml(ctx)
	if err != nil {
		return sum, err
	}
	gpus := make([]sampledGPU, 0, len(opts.UUIDs))
	for _, u := range opts.UUIDs {
		d, ret := lib.DeviceGetHandleByUUID(u)
		if ret != nvml.SUCCESS {
			return sum, nvmlError("telemetry: find gpu "+u, ret)
		}
		idx, ret := d.GetIndex()
		if ret != nvml.SUCCESS {
			return sum, nvmlError("telemetry: gpu "+u+": read index", ret)
		}
		gpus = append(gpus, sampledGPU{dev: d, uuid: u, index: idx})
		sum.GPUs = append(sum.GPUs, GPUSummary{Index: idx, UUID: u})
	}
	defer func() {
		for _, g := range gpus {
			m.metrics.forget(g.uuid, g.index)
		}
	}()

	ticks := opts.Ticks
	if ticks == nil {
		t := time.NewTicker(opts.Interval)
		defer t.Stop()
		ticks = t.C
	}
	m.log.Debug("telemetry started", zap.Strings("uuids", opts.UUIDs), zap.Duration("interval", opts.Interval))
	samples := make([]Sample, len(gpus))
	for {
		now := m.opts.Now()
		for i, g := range gpus {
			samples[i] = sampleGPU(g, syms, now)
			sum.GPUs[i].add(samples[i])
			m.metrics.set(samples[i])
		}
		sum.End = now
		if err := w.rows(samples); err != nil {
			return sum, err
		}
		if opts.OnSample != nil {
			opts.OnSample(append([]Sample(nil), samples...))
		}
		select {
		case <-ctx.Done():
			return sum, nil
		case _, ok := <-ticks:
			if !ok {
				return sum, nil
			}
		}
	}
}

func sampleGPU(g sampledGPU, syms symbols, now time.Time) Sample {
	s := Sample{Time: now, Index: g.index, UUID: g.uuid}
	var un []string
	s.Metrics, un = readMetrics(g.dev, syms)
	if len(un) >= metricReadings {
		s.Error = strings.Join(un, "; ")
		return s
	}
	s.Unavailable = un
	s.Throttle = ThrottleNames(s.ThrottleReasons)
	return s
}

// metricReadings is how many readings readMetrics attempts; a sample
// where all of them failed is an error row.
const metricReadings = 6

type rowWriter struct {
	w      io.Writer
	format Format
	buf    bytes.Buffer
}

func (r *rowWriter) header() error {
	if r.w == nil || r.format != FormatCSV {
		return nil
	}
	cw := csv.NewWriter(&r.buf)
	_ = cw.Write(csvHeader)
	cw.Flush()
	return r.flush()
}

func (r *rowWriter) rows(samples []Sample) error {
	if r.w == nil {
		return nil
	}
	switch r.format {
	case FormatCSV:
		cw := csv.NewWriter(&r.buf)
		for _, s := range samples {
			_ = cw.Write(s.csvRow())
		}
		cw.Flush()
	default:
		enc := json.NewEncoder(&r.buf)
		for _, s := range samples {
			if err := enc.Encode(s); err != nil {
				return fmt.Errorf("telemetry: encode sample: %w", err)
			}
		}
	}
	return r.flush()
}

func (r *rowWriter) flush() error {
	defer r.buf.Reset()
	if _, err := r.w.Write(r.buf.Bytes()); err != nil {
		return fmt.Errorf("telemetry: write samples: %w", err)
	}
	return nil
}

// TelemetryToFile runs Telemetry into a file. The rows go to a temporary
// file beside path, which is synced and renamed to path when sampling
// ends, so path never holds a half-written file; on a failure the
// temporary file is removed. An empty opts.Format is taken from path's
// extension (.csv, else JSON lines).
func (m *Manager) TelemetryToFile(ctx context.Context, path string, opts TelemetryOptions) (TelemetrySummary, error) {
	if opts.Format == "" {
		opts.Format = FormatForPath(path)
	}
	f, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644), renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return TelemetrySummary{}, fmt.Errorf("telemetry file %s: %w", path, err)
	}
	defer func() { _ = f.Cleanup() }() // a no-op once replaced
	opts.Writer = f
	sum, err := m.Telemetry(ctx, opts)
	if err == nil {
		err = f.CloseAtomicallyReplace()
	}
	if err != nil {
		return sum, fmt.Errorf("telemetry file %s: %w", path, err)
	}
	return sum, nil
}
