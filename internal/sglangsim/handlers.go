package sglangsim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// route is one FastAPI endpoint: the methods it accepts and whether it is an
// admin route (profile and cache control) for --api-key/--admin-api-key.
type route struct {
	methods []string
	auth    authClass
	h       http.HandlerFunc
}

type authClass int

const (
	authOpen   authClass = iota // /health*, /metrics: never checked
	authNormal                  // inference and info routes
	authAdmin                   // /start_profile, /stop_profile, /flush_cache
)

func (s *Server) routes() http.Handler {
	rt := map[string]route{
		"/health":              {[]string{"GET"}, authOpen, s.handleHealth},
		"/health_generate":     {[]string{"GET"}, authOpen, s.handleHealth},
		"/model_info":          {[]string{"GET"}, authNormal, s.handleModelInfo},
		"/get_model_info":      {[]string{"GET"}, authNormal, s.handleModelInfo},
		"/server_info":         {[]string{"GET"}, authNormal, s.handleServerInfo},
		"/get_server_info":     {[]string{"GET"}, authNormal, s.handleServerInfo},
		"/v1/models":           {[]string{"GET"}, authNormal, s.handleModels},
		"/v1/completions":      {[]string{"POST"}, authNormal, s.handleCompletions},
		"/v1/chat/completions": {[]string{"POST"}, authNormal, s.handleChatCompletions},
		"/generate":            {[]string{"POST", "PUT"}, authNormal, s.handleGenerate},
		"/flush_cache":         {[]string{"GET", "POST"}, authAdmin, s.handleFlushCache},
		"/start_profile":       {[]string{"GET", "POST"}, authAdmin, s.handleStartProfile},
		"/stop_profile":        {[]string{"GET", "POST"}, authAdmin, s.handleStopProfile},
		"/metrics":             {[]string{"GET"}, authOpen, s.handleMetrics},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.getState() == stateLoading {
			// The real server binds its port only after loading: drop the
			// connection so clients see a refused/reset connection, not HTTP.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					if tc, ok := c.(*net.TCPConn); ok {
						tc.SetLinger(0)
					}
					c.Close()
					return
				}
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		lw := &logWriter{ResponseWriter: w, status: 200}
		defer func() {
			s.log.printf("", "INFO:     %s - \"%s %s HTTP/%d.%d\" %d %s", r.RemoteAddr, r.Method, r.URL.RequestURI(), r.ProtoMajor, r.ProtoMinor, lw.status, http.StatusText(lw.status))
		}()
		lw.Header().Set("Server", "uvicorn")
		if d := s.opts.SlowResponse; d > 0 {
			if sleepCtx(r.Context(), d) != nil {
				return
			}
		}
		rr, ok := rt[r.URL.Path]
		if !ok || (r.URL.Path == "/metrics" && !s.cfg.Args.EnableMetrics) {
			writeJSON(lw, http.StatusNotFound, map[string]string{"detail": "Not Found"})
			return
		}
		allowed := false
		for _, m := range rr.methods {
			if m == r.Method || (m == "GET" && r.Method == "HEAD") {
				allowed = true
			}
		}
		if !allowed {
			lw.Header().Set("Allow", strings.Join(rr.methods, ", "))
			writeJSON(lw, http.StatusMethodNotAllowed, map[string]string{"detail": "Method Not Allowed"})
			return
		}
		if code := s.authorize(r, rr.auth); code != 0 {
			msg := "Unauthorized"
			if code == http.StatusForbidden {
				msg = "Forbidden"
			}
			writeJSON(lw, code, map[string]string{"error": msg})
			return
		}
		rr.h(lw, r)
	})
}

// authorize applies SGLang's auth rules (srt/utils/auth.py) and returns 0 or
// the status to answer.
func (s *Server) authorize(r *http.Request, class authClass) int {
	if class == authOpen {
		return 0
	}
	a := &s.cfg.Args
	tok, hasTok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	tok = strings.TrimSpace(tok)
	isAPI := hasTok && a.APIKey != nil && tok == *a.APIKey
	isAdmin := hasTok && a.AdminAPIKey != nil && tok == *a.AdminAPIKey
	if class == authAdmin {
		switch {
		case a.AdminAPIKey != nil:
			if isAdmin {
				return 0
			}
			if isAPI {
				return http.StatusForbidden
			}
			return http.StatusUnauthorized
		case a.APIKey != nil:
			if isAPI {
				return 0
			}
			return http.StatusUnauthorized
		}
		return 0
	}
	if a.APIKey != nil && !isAPI && !isAdmin {
		return http.StatusUnauthorized
	}
	return 0
}

type logWriter struct {
	http.ResponseWriter
	status  int
	written bool
}

func (l *logWriter) WriteHeader(code int) {
	if !l.written {
		l.status = code
		l.written = true
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *logWriter) Write(b []byte) (int, error) {
	l.written = true
	return l.ResponseWriter.Write(b)
}

func (l *logWriter) Flush() {
	if f, ok := l.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

// writePlain answers like Starlette's Response(content=...): no media type.
func writePlain(w http.ResponseWriter, code int, body string) {
	w.Header()["Content-Type"] = nil
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// internalError answers the way an unhandled exception in a FastAPI route
// does: 500 "Internal Server Error" (text/plain) and uvicorn's traceback in
// the log, whose last line carries the reason.
func (s *Server) internalError(w http.ResponseWriter, route, reason string) {
	s.log.raw("ERROR:    Exception in ASGI application\nTraceback (most recent call last):\n" +
		"  File \"/usr/local/lib/python3.12/dist-packages/uvicorn/protocols/http/httptools_impl.py\", line 409, in run_asgi\n" +
		"    result = await app(  # type: ignore[func-returns-value]\n" +
		"  File \"/sgl-workspace/sglang/python/sglang/srt/entrypoints/http_server.py\", line 812, in " + route + "\n" +
		"    await _global_state.tokenizer_manager." + strings.TrimSuffix(route, "_async") + "()\n" +
		"  File \"/sgl-workspace/sglang/python/sglang/srt/managers/tokenizer_communicator_mixin.py\", line 402, in _execute_profile\n" +
		"    raise RuntimeError(result.message)\n" +
		"RuntimeError: " + reason)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	io.WriteString(w, "Internal Server Error")
}

// abortIfDead drops the connection without an answer when the server died
// while the request waited, as clients of a killed SGLang see it.
func (s *Server) abortIfDead() {
	if s.ctx.Err() != nil {
		panic(http.ErrAbortHandler)
	}
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"object": "error", "message": msg, "type": "Bad Request", "param": nil, "code": 400})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.getState() != stateUp {
		writePlain(w, http.StatusServiceUnavailable, "")
		return
	}
	if !envBool(s.cfg.Env, "SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION", true) {
		writePlain(w, http.StatusOK, "")
		return
	}
	tic := time.Now()
	req := s.submit(1, 1, true)
	defer req.canceled.Store(true)
	timeout := envSeconds(s.cfg.Env, "SGLANG_HEALTH_CHECK_TIMEOUT", 20*time.Second)
	deadline := tic.Add(timeout)
	for time.Now().Before(deadline) {
		wait := min(s.opts.HealthPollInterval, time.Until(deadline))
		if err := sleepCtx(r.Context(), wait); err != nil {
			return
		}
		if s.ctx.Err() != nil {
			break
		}
		if s.lastOutput.Load() > tic.UnixNano() {
			writePlain(w, http.StatusOK, "")
			return
		}
	}
	s.log.printf("", "Health check failed. Server couldn't get a response from detokenizer for last %d seconds. tic start time: %.2f. last_heartbeat time: %.2f",
		int(timeout.Seconds()), float64(tic.UnixNano())/1e9, float64(s.lastOutput.Load())/1e9)
	writePlain(w, http.StatusServiceUnavailable, "")
}

// modelArch returns the architecture and model type for /model_info: from
// config.json when the model path is a local directory (as SGLang reads it),
// otherwise guessed from the name.
func modelArch(path string) (arch, modelType string) {
	if b, err := os.ReadFile(filepath.Join(path, "config.json")); err == nil {
		var cfg struct {
			Architectures []string `json:"architectures"`
			ModelType     string   `json:"model_type"`
		}
		if json.Unmarshal(b, &cfg) == nil && len(cfg.Architectures) > 0 {
			return cfg.Architectures[0], cfg.ModelType
		}
	}
	p := strings.ToLower(path)
	switch {
	case strings.Contains(p, "qwen3"):
		return "Qwen3ForCausalLM", "qwen3"
	case strings.Contains(p, "qwen2"), strings.Contains(p, "qwen"):
		return "Qwen2ForCausalLM", "qwen2"
	case strings.Contains(p, "mistral"):
		return "MistralForCausalLM", "mistral"
	case strings.Contains(p, "deepseek"):
		return "DeepseekV3ForCausalLM", "deepseek_v3"
	case strings.Contains(p, "gpt-oss"):
		return "GptOssForCausalLM", "gpt_oss"
	}
	return "LlamaForCausalLM", "llama"
}

func (s *Server) handleModelInfo(w http.ResponseWriter, r *http.Request) {
	a := &s.cfg.Args
	arch, mt := modelArch(a.ModelPath)
	writeJSON(w, 200, map[string]any{
		"model_path": a.ModelPath, "tokenizer_path": a.TokenizerPath, "is_generation": true,
		"preferred_sampling_params": nil, "weight_version": "default",
		"has_image_understanding": false, "has_audio_understanding": false,
		"model_type": mt, "architectures": []string{arch},
	})
}

// handleServerInfo returns the server arguments as SGLang does:
// dataclasses.asdict(server_args), API keys in clear text included (callers
// that store it must redact them), plus scheduler info, internal states and
// the version.
func (s *Server) handleServerInfo(w http.ResponseWriter, r *http.Request) {
	b, _ := json.Marshal(s.cfg.Args)
	info := map[string]any{}
	json.Unmarshal(b, &info)
	info["max_total_num_tokens"] = 812345
	info["max_req_input_len"] = 40954
	info["max_prefill_tokens"] = 16384
	info["max_running_requests"] = 4096
	info["internal_states"] = []map[string]any{{
		"last_gen_throughput":    s.metrics.lastThroughput(),
		"avg_spec_accept_length": nil,
		"memory_usage":           map[string]any{"weight": 16.4 / float64(s.cfg.Args.TPSize), "kvcache": 111.56, "token_capacity": 812345, "graph": 0.62},
	}}
	info["version"] = s.opts.Version
	writeJSON(w, 200, info)
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	a := &s.cfg.Args
	writeJSON(w, 200, map[string]any{"object": "list", "data": []map[string]any{{
		"id": a.ServedModelName, "object": "model", "created": s.metrics.startUnix, "owned_by": "sglang",
		"root": a.ModelPath, "parent": nil, "max_model_len": 40960,
	}}})
}

func (s *Server) handleFlushCache(w http.ResponseWriter, r *http.Request) {
	const body = "Cache flushed.\nPlease check backend logs for more details. (When there are running or waiting requests, the operation will not be performed.)\n"
	// ?timeout=N retries for up to N seconds until the server is idle.
	timeout, _ := strconv.ParseFloat(r.URL.Query().Get("timeout"), 64)
	deadline := time.Now().Add(time.Duration(timeout * float64(time.Second)))
	var ok bool
	for {
		ok = true
		for _, e := range s.engines {
			rep, err := e.control(r.Context(), ctrlMsg{kind: "flush"})
			if err != nil {
				s.abortIfDead()
				return
			}
			ok = ok && rep.ok
		}
		if ok || !time.Now().Before(deadline) {
			break
		}
		if sleepCtx(r.Context(), 50*time.Millisecond) != nil {
			return
		}
	}
	if !ok {
		writePlain(w, http.StatusBadRequest, body)
		return
	}
	writePlain(w, http.StatusOK, body)
}

// fanOut sends a control message to every DP replica and returns the first
// replica's reply, which is the one the tokenizer manager checks.
func (s *Server) fanOut(ctx context.Context, m ctrlMsg) (ctrlReply, error) {
	replies := make([]ctrlReply, len(s.engines))
	errs := make([]error, len(s.engines))
	var wg sync.WaitGroup
	for i, e := range s.engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = e.control(ctx, m)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return ctrlReply{}, err
		}
	}
	return replies[0], nil
}

func (s *Server) handleStartProfile(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		badRequest(w, fmt.Sprintf("read body: %v", err))
		return
	}
	req, err := ParseProfileRequest(body)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	s.profileMu.Lock()
	defer s.profileMu.Unlock()
	req.profileID = profileIDNow(time.Now().UnixNano())
	rep, err := s.fanOut(r.Context(), ctrlMsg{kind: "start", start: req})
	if err != nil {
		s.abortIfDead()
		return
	}
	if !rep.ok {
		s.internalError(w, "start_profile_async", rep.msg)
		return
	}
	writePlain(w, http.StatusOK, "Start profiling.\n")
}

func (s *Server) handleStopProfile(w http.ResponseWriter, r *http.Request) {
	s.profileMu.Lock()
	defer s.profileMu.Unlock()
	rep, err := s.fanOut(r.Context(), ctrlMsg{kind: "stop"})
	if err != nil {
		s.abortIfDead()
		return
	}
	if !rep.ok {
		s.internalError(w, "stop_profile_async", rep.msg)
		return
	}
	writePlain(w, http.StatusOK, "Stop profiling. This will take some time.\n")
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.serve(w, r, s)
}

// sseWriter writes server-sent events and flushes each one.
type sseWriter struct {
	w  http.ResponseWriter
	bw *bufio.Writer
}

func newSSE(w http.ResponseWriter) *sseWriter {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	return &sseWriter{w: w, bw: bufio.NewWriter(w)}
}

func (e *sseWriter) data(v any) {
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	default:
		b, _ = json.Marshal(v)
	}
	e.bw.WriteString("data: ")
	e.bw.Write(b)
	e.bw.WriteString("\n\n")
	e.bw.Flush()
	if f, ok := e.w.(http.Flusher); ok {
		f.Flush()
	}
}
