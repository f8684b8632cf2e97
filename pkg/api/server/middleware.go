package server

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sglangd/sglangd/pkg/api"
)

// authenticate guards TCP listeners: a bearer token is required on every
// request, and browser requests (Origin header) are refused so a web page
// cannot drive the daemon.
func (s *Server) authenticate(next http.Handler) http.Handler {
	want := []byte(s.opts.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" {
			WriteError(w, fmt.Errorf("browser requests are not accepted: %w", errdefs.ErrPermissionDenied))
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || len(want) == 0 || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sglangd"`)
			WriteError(w, api.WithHint(fmt.Errorf("missing or wrong bearer token: %w", errdefs.ErrUnauthenticated),
				"pass --token or set SGLANGD_TOKEN to the daemon's api token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

type apiMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newAPIMetrics(reg *prometheus.Registry, b api.BuildInfo) (*apiMetrics, error) {
	m := &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sglangd_api_requests_total", Help: "API requests by method, route and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sglangd_api_request_duration_seconds", Help: "API request latency by method and route (streams: whole stream).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"method", "route"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sglangd_build_info", Help: "Build information of the running daemon (value 1).",
	}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(b.Version, b.Commit, b.GoVersion).Set(1)
	for _, c := range []prometheus.Collector{m.requests, m.duration, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register api metrics: %w", err)
		}
	}
	return m, nil
}

// statusRecorder remembers the status code and passes Flush through, so
// NDJSON streams keep flushing per event.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set(api.VersionHeader, s.opts.Build.Version)
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		// The mux sets r.Pattern; unmatched paths share one label so
		// scanners cannot blow up the series count.
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		} else if _, p, ok := strings.Cut(route, " "); ok {
			route = p
		}
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(r.Method, route, strconv.Itoa(rec.code)).Inc()
		s.metrics.duration.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
	})
}
