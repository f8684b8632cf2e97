package docker

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	pulls        *prometheus.CounterVec
	pullSeconds  prometheus.Histogram
	starts       *prometheus.CounterVec
	readySeconds prometheus.Histogram
	running      prometheus.Gauge
}

// newMetrics registers the package's metrics with reg; a nil reg gives
// working metrics that are simply not exported.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sglangd_image_pulls_total",
			Help: "Image pulls by result: pulled, up_to_date, present, or the failure (unauthenticated, denied, not_found, unreachable, not_present, other, error).",
		}, []string{"result"}),
		pullSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sglangd_image_pull_duration_seconds",
			Help:    "Time taken by image pulls that downloaded something.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sglangd_server_starts_total",
			Help: "SGLang server container starts by result: ready, exited, timeout, error, reused.",
		}, []string{"result"}),
		readySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sglangd_server_ready_duration_seconds",
			Help:    "Time from container start to /health answering 200.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sglangd_server_containers",
			Help: "SGLang server containers this daemon manages (running or adopted).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pulls, m.pullSeconds, m.starts, m.readySeconds, m.running} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
