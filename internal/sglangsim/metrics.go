package sglangsim

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// simMetrics exposes SGLang's Prometheus metrics (sglang:* names, label
// model_name) on a registry private to one server.
type simMetrics struct {
	reg       *prometheus.Registry
	startUnix int64

	promptTokens *prometheus.CounterVec
	genTokens    *prometheus.CounterVec
	requests     *prometheus.CounterVec
	ttft         *prometheus.HistogramVec
	e2e          *prometheus.HistogramVec
	model        string

	mu         sync.Mutex
	throughput float64
	srv        *Server
}

func newSimMetrics(model string) *simMetrics {
	m := &simMetrics{reg: prometheus.NewRegistry(), startUnix: time.Now().Unix(), model: model}
	lbl := []string{"model_name"}
	m.promptTokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sglang:prompt_tokens_total", Help: "Number of prefill tokens processed."}, lbl)
	m.genTokens = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sglang:generation_tokens_total", Help: "Number of generation tokens processed."}, lbl)
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sglang:num_requests_total", Help: "Number of requests processed."}, lbl)
	m.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sglang:time_to_first_token_seconds", Help: "Histogram of time to first token in seconds.",
		Buckets: []float64{0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 120, 160}}, lbl)
	m.e2e = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sglang:e2e_request_latency_seconds", Help: "Histogram of End-to-end request latency in seconds",
		Buckets: []float64{0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 500, 1000}}, lbl)
	m.reg.MustRegister(m.promptTokens, m.genTokens, m.requests, m.ttft, m.e2e)
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"model_name": model}}, f))
	}
	gauge("sglang:num_running_reqs", "The number of running requests.", func() float64 { return m.sum(func(e *engine) int64 { return e.numRunning.Load() }) })
	gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", func() float64 { return m.sum(func(e *engine) int64 { return e.numQueued.Load() }) })
	gauge("sglang:gen_throughput", "The generation throughput (token/s).", m.lastThroughput)
	gauge("sglang:token_usage", "The token usage.", func() float64 { return 0 })
	gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", func() float64 { return 0 })
	return m
}

func (m *simMetrics) sum(f func(*engine) int64) float64 {
	m.mu.Lock()
	s := m.srv
	m.mu.Unlock()
	if s == nil {
		return 0
	}
	var t int64
	for _, e := range s.engines {
		t += f(e)
	}
	return float64(t)
}

func (m *simMetrics) arrived(r *request) {
	if r.health {
		return
	}
	m.promptTokens.WithLabelValues(m.model).Add(float64(r.promptTokens))
}

func (m *simMetrics) finished(r *request, now time.Time) {
	if r.health {
		return
	}
	m.requests.WithLabelValues(m.model).Inc()
	m.genTokens.WithLabelValues(m.model).Add(float64(r.generated))
	m.ttft.WithLabelValues(m.model).Observe(r.firstToken.Sub(r.arrival).Seconds())
	m.e2e.WithLabelValues(m.model).Observe(now.Sub(r.arrival).Seconds())
}

func (m *simMetrics) step(rec stepRecord) {
	if rec.mode != StageDecode {
		return
	}
	d := rec.end.Sub(rec.start).Seconds()
	if d <= 0 {
		return
	}
	m.mu.Lock()
	m.throughput = math.Round(float64(rec.bs)/d*100) / 100
	m.mu.Unlock()
}

func (m *simMetrics) lastThroughput() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.throughput
}

func (m *simMetrics) serve(w http.ResponseWriter, r *http.Request, s *Server) {
	m.mu.Lock()
	m.srv = s
	m.mu.Unlock()
	promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
}
