package gpu

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the latest telemetry readings as Prometheus gauges, one
// series per GPU ({uuid, index}). They exist while a session samples the
// GPU and are removed when its sampling ends, so a scrape never shows
// stale readings of an idle or released GPU.
type metrics struct {
	utilization    *prometheus.GaugeVec
	memUtilization *prometheus.GaugeVec
	memUsed        *prometheus.GaugeVec
	memTotal       *prometheus.GaugeVec
	power          *prometheus.GaugeVec
	temperature    *prometheus.GaugeVec
	smClock        *prometheus.GaugeVec
	throttle       *prometheus.GaugeVec
	samples        *prometheus.CounterVec
	sampleErrors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	labels := []string{"uuid", "index"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "sglangd", Subsystem: "gpu", Name: name, Help: help}, labels)
	}
	m := &metrics{
		utilization:    gauge("utilization_percent", "Share of the last NVML sample period in which a kernel ran on the GPU."),
		memUtilization: gauge("memory_utilization_percent", "Share of the last NVML sample period in which GPU memory was read or written."),
		memUsed:        gauge("memory_used_bytes", "GPU memory in use."),
		memTotal:       gauge("memory_total_bytes", "GPU memory installed."),
		power:          gauge("power_watts", "GPU power draw."),
		temperature:    gauge("temperature_celsius", "GPU core temperature."),
		smClock:        gauge("sm_clock_mhz", "Current SM clock."),
		throttle:       gauge("throttle_reasons", "NVML clocks event reasons bitmask (4 sw_power_cap, 8 hw_slowdown, 32 sw_thermal, 64 hw_thermal, 128 hw_power_brake; 1 is idle)."),
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sglangd", Subsystem: "gpu",
			Name: "telemetry_samples_total", Help: "GPU telemetry samples taken."}, labels),
		sampleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sglangd", Subsystem: "gpu",
			Name: "telemetry_errors_total", Help: "GPU telemetry readings that failed."}, labels),
	}
	for _, c := range []prometheus.Collector{m.utilization, m.memUtilization, m.memUsed, m.memTotal, m.power,
		m.temperature, m.smClock, m.throttle, m.samples, m.sampleErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) set(s Sample) {
	l := prometheus.Labels{"uuid": s.UUID, "index": strconv.Itoa(s.Index)}
	m.samples.With(l).Inc()
	if s.Error != "" || len(s.Unavailable) > 0 {
		m.sampleErrors.With(l).Inc()
	}
	if s.Error != "" {
		m.forget(s.UUID, s.Index)
		return
	}
	// A reading that failed keeps its gauge absent rather than zero, so
	// dashboards show a gap instead of a false idle GPU.
	bad := map[string]bool{}
	for _, u := range s.Unavailable {
		name, _, _ := strings.Cut(u, ":")
		bad[name] = true
	}
	set := func(g *prometheus.GaugeVec, reading string, v float64) {
		if bad[reading] {
			g.Delete(l)
			return
		}
		g.With(l).Set(v)
	}
	set(m.utilization, "utilization", float64(s.UtilizationPercent))
	set(m.memUtilization, "utilization", float64(s.MemoryUtilizationPercent))
	set(m.memUsed, "memory", float64(s.MemoryUsedBytes))
	set(m.memTotal, "memory", float64(s.MemoryTotalBytes))
	set(m.power, "power", s.PowerWatts)
	set(m.temperature, "temperature", float64(s.TemperatureCelsius))
	set(m.smClock, "sm_clock", float64(s.SMClockMHz))
	set(m.throttle, "throttle_reasons", float64(s.ThrottleReasons))
}

// forget drops a GPU's gauges (its counters stay: they only grow).
func (m *metrics) forget(uuid string, index int) {
	l := prometheus.Labels{"uuid": uuid, "index": strconv.Itoa(index)}
	for _, g := range []*prometheus.GaugeVec{m.utilization, m.memUtilization, m.memUsed, m.memTotal, m.power,
		m.temperature, m.smClock, m.throttle} {
		g.Delete(l)
	}
}
