package sglangsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
)

type serverState int32

const (
	stateLoading  serverState = iota // model loading: connections are dropped
	stateStarting                    // HTTP up, warm-up running: /health is 503
	stateUp
	stateDead
)

// ErrCrashed is returned by Wait when the simulated scheduler died (a
// CrashAtStep fault, or profile_by_stage without num_steps).
var ErrCrashed = errors.New("sglang server crashed")

// Server is a running simulated SGLang server.
type Server struct {
	cfg  Config
	opts SimOptions
	log  *lineLog

	engines []*engine
	rr      atomic.Uint64
	state   atomic.Int32

	lastOutput atomic.Int64
	metrics    *simMetrics
	background sync.WaitGroup

	profileMu sync.Mutex

	ln      net.Listener
	httpSrv *http.Server
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	ready   chan struct{}
	errMu   sync.Mutex
	err     error

	// deferListen makes the server bind its port only after model loading,
	// so that early connections are refused as with the real server.
	deferListen bool
	listening   chan struct{}
}

// Start launches a simulated server in-process. Unless cfg.Listener is set
// it listens on Args.Host:Args.Port right away (port 0 picks a free port);
// while the model "loads" (SimOptions.LoadTime) connections are accepted
// and closed at once, then the warm-up runs with /health answering 503.
// Cancelling ctx stops the server as Close does; call Close in any case to
// wait for its goroutines.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	return start(ctx, cfg, false)
}

func start(ctx context.Context, cfg Config, deferListen bool) (*Server, error) {
	s := &Server{
		cfg:         cfg,
		opts:        cfg.Sim.withDefaults(),
		log:         newLineLog(cfg.Log),
		done:        make(chan struct{}),
		ready:       make(chan struct{}),
		listening:   make(chan struct{}),
		deferListen: deferListen,
	}
	if s.cfg.Env == nil {
		s.cfg.Env = map[string]string{}
	}
	a := &s.cfg.Args
	if a.ModelPath == "" {
		return nil, fmt.Errorf("server args: model_path is required: %w", errdefs.ErrInvalidArgument)
	}
	if a.TPSize < 1 || a.DPSize < 1 || a.PPSize < 1 || a.EPSize < 1 {
		return nil, fmt.Errorf("server args: tp/dp/pp/ep sizes must be at least 1 (got %d/%d/%d/%d): %w", a.TPSize, a.DPSize, a.PPSize, a.EPSize, errdefs.ErrInvalidArgument)
	}
	if a.ServedModelName == "" {
		a.ServedModelName = a.ModelPath
	}
	if a.TokenizerPath == "" {
		a.TokenizerPath = a.ModelPath
	}
	if s.opts.StrictArgs && len(a.Unknown) > 0 {
		return nil, fmt.Errorf("unrecognized arguments: %s: %w", strings.Join(a.Unknown, " "), errdefs.ErrInvalidArgument)
	}
	s.metrics = newSimMetrics(a.ServedModelName)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if ctx != nil {
		stop := context.AfterFunc(ctx, s.cancel)
		go func() { <-s.done; stop() }()
	}
	s.httpSrv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 30 * time.Second}
	if !deferListen {
		ln := cfg.Listener
		if ln == nil {
			var err error
			ln, err = net.Listen("tcp", net.JoinHostPort(a.Host, strconv.Itoa(a.Port)))
			if err != nil {
				s.cancel()
				return nil, fmt.Errorf("listen on %s:%d: %w", a.Host, a.Port, err)
			}
		}
		s.ln = ln
		close(s.listening)
		go s.httpSrv.Serve(ln)
	}
	for dp := 0; dp < a.DPSize; dp++ {
		s.engines = append(s.engines, newEngine(s, dp))
	}
	go s.run()
	return s, nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:30000.
func (s *Server) URL() string {
	<-s.listening
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Addr is the listening address; it blocks until the port is bound.
func (s *Server) Addr() net.Addr {
	<-s.listening
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Ready is closed once the warm-up succeeded ("The server is fired up and
// ready to roll!").
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Done is closed when the server has stopped, by Close or by a crash.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err reports why the server stopped: nil after Close, ErrCrashed (wrapped)
// after a scheduler crash or a failed warm-up.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Wait blocks until the server stops or ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ForwardCount returns the batch counter of DP replica dp (0 when out of
// range), for tests that place start_step.
func (s *Server) ForwardCount(dp int) int {
	if dp < 0 || dp >= len(s.engines) {
		return 0
	}
	return int(s.engines[dp].forwardCtSnapshot.Load())
}

// Close stops the server, interrupting any export, and waits for its
// goroutines.
func (s *Server) Close() error {
	s.fail(nil)
	<-s.done
	return nil
}

func (s *Server) fail(err error) {
	s.errMu.Lock()
	if s.err == nil && err != nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.cancel()
}

func (s *Server) setState(st serverState) { s.state.Store(int32(st)) }
func (s *Server) getState() serverState   { return serverState(s.state.Load()) }

// run is the lifecycle: load, serve, warm up, then wait for the end.
func (s *Server) run() {
	defer close(s.done)
	a := &s.cfg.Args
	s.log.printf("", "server_args=%s", s.serverArgsRepr())
	for i := 0; i < len(a.Unknown); i++ {
		s.log.printf("", "WARNING: unrecognized launch_server argument %q accepted and ignored", a.Unknown[i])
	}
	var loops sync.WaitGroup
	defer func() {
		s.setState(stateDead)
		select {
		case <-s.listening:
		default: // died before binding its port (Main): URL and Addr return empty
			close(s.listening)
		}
		shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.httpSrv.Shutdown(shutCtx)
		cancel()
		s.httpSrv.Close()
		s.cancel()
		loops.Wait()
		s.background.Wait()
	}()

	for _, e := range s.engines {
		for _, r := range e.ranks {
			s.log.printf(rankPrefix(a, r), "Load weight begin. avail mem=139.21 GB")
		}
	}
	if err := sleepCtx(s.ctx, s.opts.LoadTime); err != nil {
		return
	}
	if s.opts.LoadError != "" {
		err := s.engines[0].crashIn(loadFrames, s.opts.LoadError)
		s.log.printf("", "Received sigquit from a child process. It usually means the child failed.")
		s.fail(fmt.Errorf("%w: model loading failed: %v", ErrCrashed, err))
		return
	}
	for _, e := range s.engines {
		for _, r := range e.ranks {
			p := rankPrefix(a, r)
			s.log.printf(p, "Load weight end. type=Qwen3ForCausalLM, dtype=torch.bfloat16, avail mem=%.2f GB, mem usage=%.2f GB.", 139.21-16.4/float64(a.TPSize), 16.4/float64(a.TPSize))
			s.log.printf(p, "KV Cache is allocated. #tokens: 812345, K size: 55.78 GB, V size: 55.78 GB")
			if !a.DisableCUDAGraph {
				s.log.printf(p, "Capture cuda graph begin. This can take up to several minutes. avail mem=10.62 GB")
				s.log.printf(p, "Capture cuda graph end. Time elapsed: 6.31 s. mem usage=0.62 GB. avail mem=10.00 GB.")
			}
		}
		s.log.printf(rankPrefix(a, e.ranks[0]), "max_total_num_tokens=812345, chunked_prefill_size=%d, max_prefill_tokens=16384, max_running_requests=4096, context_len=40960, available_gpu_mem=10.00 GB", a.ChunkedPrefillSize)
	}
	for _, e := range s.engines {
		loops.Add(1)
		go func() {
			defer loops.Done()
			if err := e.loop(s.ctx); err != nil && s.ctx.Err() == nil {
				s.log.printf("", "Received sigquit from a child process. It usually means the child failed.")
				s.fail(fmt.Errorf("%w: %v", ErrCrashed, err))
			}
		}()
	}
	if s.deferListen {
		ln := s.cfg.Listener
		if ln == nil {
			var err error
			ln, err = net.Listen("tcp", net.JoinHostPort(a.Host, strconv.Itoa(a.Port)))
			if err != nil {
				s.log.printf("", "ERROR:    [Errno 98] error while attempting to bind on address ('%s', %d): address already in use", a.Host, a.Port)
				s.fail(fmt.Errorf("listen on %s:%d: %w", a.Host, a.Port, err))
				return
			}
		}
		s.ln = ln
		close(s.listening)
		go s.httpSrv.Serve(ln)
	}
	s.setState(stateStarting)
	s.log.printf("", "INFO:     Started server process [1]")
	s.log.printf("", "INFO:     Waiting for application startup.")
	s.log.printf("", "INFO:     Application startup complete.")
	s.log.printf("", "INFO:     Uvicorn running on http://%s (Press CTRL+C to quit)", net.JoinHostPort(a.Host, strconv.Itoa(s.ln.Addr().(*net.TCPAddr).Port)))

	if !a.SkipServerWarmup {
		s.log.printf("", "INFO:     127.0.0.1:%d - \"GET /model_info HTTP/1.1\" 200 OK", 40000)
		r := s.submit(8, 8, false)
	warmup:
		for {
			select {
			case _, ok := <-r.out:
				if !ok {
					break warmup
				}
			case <-s.ctx.Done():
				return
			}
		}
		if s.opts.WarmupError != "" {
			s.log.printf("", "Initialization failed. warmup error: %s", s.opts.WarmupError)
			s.fail(fmt.Errorf("%w: warm-up failed: %s", ErrCrashed, s.opts.WarmupError))
			return
		}
		s.log.printf("", "INFO:     127.0.0.1:%d - \"POST /generate HTTP/1.1\" 200 OK", 40002)
	}
	s.setState(stateUp)
	s.log.printf("", "The server is fired up and ready to roll!")
	close(s.ready)
	<-s.ctx.Done()
	if s.Err() == nil {
		s.log.printf("", "INFO:     Shutting down")
	}
}

// submit routes a request to a DP replica (round robin, as SGLang's data
// parallel controller does by default).
func (s *Server) submit(promptTokens, maxNew int, health bool) *request {
	e := s.engines[int(s.rr.Add(1)-1)%len(s.engines)]
	r := &request{
		rid:          newRID(),
		promptTokens: max(1, promptTokens),
		maxNew:       max(1, maxNew),
		health:       health,
		arrival:      time.Now(),
		out:          make(chan tokenEvent, max(1, maxNew)),
	}
	s.metrics.arrived(r)
	e.submit(r)
	return r
}

func (s *Server) serverArgsRepr() string {
	a := &s.cfg.Args
	return fmt.Sprintf("ServerArgs(model_path='%s', tokenizer_path='%s', host='%s', port=%d, tp_size=%d, dp_size=%d, pp_size=%d, ep_size=%d, api_key=%s, enable_metrics=%v, skip_server_warmup=%v, disable_cuda_graph=%v, served_model_name='%s', ...)",
		a.ModelPath, a.TokenizerPath, a.Host, a.Port, a.TPSize, a.DPSize, a.PPSize, a.EPSize,
		pyStr(a.APIKey), pyBool(a.EnableMetrics), pyBool(a.SkipServerWarmup), pyBool(a.DisableCUDAGraph), a.ServedModelName)
}

// pyStr renders an optional string as Python's repr does. SGLang logs its
// ServerArgs whole, API key included; so does the simulator, so that tests
// of log collection catch secrets.
func pyStr(p *string) string {
	if p == nil {
		return "None"
	}
	return "'" + *p + "'"
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
