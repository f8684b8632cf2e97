// Package server serves sglangd's REST API (package api holds the wire
// types). It owns routing, authentication of TCP clients, error mapping,
// NDJSON progress streams and the API's Prometheus metrics; the work
// itself happens in the backends handed in through Options.
//
// The same handler serves the unix socket (trusted: the socket's mode and
// group decide who may connect) and the optional TCP listener (every
// request needs the bearer token, compared in constant time; browsers are
// refused).
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/operation"
)

// Check is one doctor check. Run must honour ctx and never panic; its
// result's Name is filled from the Check's when empty.
type Check struct {
	Name string
	Run  func(ctx context.Context) api.Check
}

// Options configure a Server.
type Options struct {
	Logger *zap.Logger
	// Registry receives the API's metrics and is served on /metrics.
	Registry *prometheus.Registry
	Build    api.BuildInfo
	// Version answers GET /v1/version (identity and data directory).
	Version func(ctx context.Context) (*api.VersionResponse, error)
	// Checks run, in order, for GET /v1/doctor.
	Checks []Check
	// Token is required as a bearer token on TCP listeners.
	Token string
	// Operations runs long operations detached from requests; New creates
	// one under context.Background() if nil (tests), the daemon passes its
	// own so operations end with the daemon.
	Operations *operation.Manager
	// GPUs answers GET /v1/gpus.
	GPUs GPUBackend
	// Images answers POST /v1/images/pull and GET /v1/images.
	Images ImageBackend
	// Models serves /v1/models; nil leaves those routes out.
	Models Models
}

// Server is the API server. Create it with New, then Serve listeners.
type Server struct {
	opts    Options
	log     *zap.Logger
	ops     *operation.Manager
	mux     *http.ServeMux
	ready   atomic.Bool
	metrics *apiMetrics

	mu      sync.Mutex
	servers []*http.Server
}

// New builds a server and registers its routes and metrics.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.Operations == nil {
		opts.Operations = operation.NewManager(context.Background(), opts.Logger)
	}
	s := &Server{opts: opts, log: opts.Logger.Named("api"), mux: http.NewServeMux(), ops: opts.Operations}
	m, err := newAPIMetrics(opts.Registry, opts.Build)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "starting"})
			return
		}
		writeJSON(w, http.StatusOK, api.Health{Status: "ready"})
	})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	s.handle("GET /v1/version", s.getVersion)
	s.handle("GET /v1/doctor", s.getDoctor)
	s.operationRoutes()
	s.handle("GET /v1/gpus", s.listGPUs)
	s.imageRoutes()
	s.modelRoutes()
}

// ServeHTTP routes a request, answering unknown paths and wrong methods
// with the API's JSON errors instead of the mux's plain text.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := s.mux.Handler(r)
	if pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	probe := &headerProbe{header: http.Header{}}
	h.ServeHTTP(probe, r)
	if probe.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", probe.header.Get("Allow"))
		WriteError(w, &api.Error{Status: http.StatusMethodNotAllowed, Code: api.CodeMethodNotAllowed,
			Message: fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, probe.header.Get("Allow"))})
		return
	}
	WriteError(w, fmt.Errorf("no route for %s %s: %w", r.Method, r.URL.Path, errdefs.ErrNotFound))
}

// headerProbe captures what the mux's own not-found/not-allowed handler
// would answer, without sending it.
type headerProbe struct {
	header http.Header
	code   int
}

func (p *headerProbe) Header() http.Header         { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(code int)        { p.code = code }

// HandlerFunc is an API handler that returns its error instead of writing
// it, so every error gets the same JSON shape and status mapping.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handle registers an API route with a pattern such as "GET /v1/gpus".
// Backends added by later features register their routes through it.
func (s *Server) Handle(pattern string, h HandlerFunc) { s.handle(pattern, h) }

func (s *Server) handle(pattern string, h HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			if e := api.FromError(err); e.Status >= 500 {
				s.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
			}
			WriteError(w, err)
		}
	})
}

// SetReady flips /readyz once the daemon has finished starting.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Handler returns the handler for a listener; tcp adds authentication.
func (s *Server) Handler(tcp bool) http.Handler {
	var h http.Handler = s
	if tcp {
		h = s.authenticate(h)
	}
	return s.instrument(h)
}

// Serve serves ln until ctx ends or Shutdown is called; tcp selects
// bearer-token authentication. It returns nil on a normal stop.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tcp bool) error {
	hs := &http.Server{
		Handler:           s.Handler(tcp),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	s.mu.Lock()
	s.servers = append(s.servers, hs)
	s.mu.Unlock()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for running requests
// until ctx ends; then it closes what is left (streams included).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := append([]*http.Server(nil), s.servers...)
	s.mu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err, hs.Close())
		}
	}
	return errors.Join(errs...)
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Version == nil {
		return writeJSON(w, http.StatusOK, api.VersionResponse{Daemon: s.opts.Build, APIVersion: api.Version})
	}
	v, err := s.opts.Version(r.Context())
	if err != nil {
		return err
	}
	v.Daemon, v.APIVersion = s.opts.Build, api.Version
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) getDoctor(w http.ResponseWriter, r *http.Request) error {
	rep := api.DoctorReport{OK: true}
	for _, c := range s.opts.Checks {
		res := runCheck(r.Context(), c)
		if res.Status == api.CheckFail {
			rep.OK = false
		}
		rep.Checks = append(rep.Checks, res)
	}
	return writeJSON(w, http.StatusOK, rep)
}

// runCheck bounds a check's time so one hung dependency (a stuck Docker
// engine) cannot hang the whole report.
func runCheck(ctx context.Context, c Check) (res api.Check) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			res = api.Check{Name: c.Name, Status: api.CheckFail, Message: fmt.Sprintf("check panicked: %v", p)}
		}
	}()
	res = c.Run(ctx)
	if res.Name == "" {
		res.Name = c.Name
	}
	return res
}

// DecodeJSON reads a JSON request body into v, refusing unknown fields and
// bodies over 1 MiB; errors are invalid arguments naming the problem.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("request body: expected a JSON object, got nothing: %w", errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("request body: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// WriteJSON writes v as the JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) error { return writeJSON(w, status, v) }

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// WriteError writes err as {"error":{...}} with the status of its class.
func WriteError(w http.ResponseWriter, err error) {
	e := api.FromError(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
}
