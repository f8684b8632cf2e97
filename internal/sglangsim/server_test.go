package sglangsim

import (
	"github.com/sglangd/sglangd/internal/testutil"

	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestEndpoints pins paths, methods, status codes and body shapes to
// sglang-api.md §1 and FastAPI's defaults.
func TestEndpoints(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Args.EnableMetrics = true })
	tests := []struct {
		method, path, body string
		code               int
		ctype              string // "" means no Content-Type header
		check              func(t *testing.T, body string)
	}{
		{"GET", "/health", "", 200, "", func(t *testing.T, b string) { expectEq(t, b, "") }},
		{"GET", "/health_generate", "", 200, "", nil},
		{"POST", "/health", "", 405, "application/json", func(t *testing.T, b string) { expectEq(t, b, `{"detail":"Method Not Allowed"}`) }},
		{"GET", "/nope", "", 404, "application/json", func(t *testing.T, b string) { expectEq(t, b, `{"detail":"Not Found"}`) }},
		{"GET", "/end_profile", "", 404, "application/json", nil},
		{"GET", "/model_info", "", 200, "application/json", func(t *testing.T, b string) {
			m := jsonObj(t, b)
			if m["model_path"] != "Qwen/Qwen3-8B" || m["is_generation"] != true {
				t.Errorf("model_info %v", m)
			}
			if a, _ := m["architectures"].([]any); len(a) != 1 || a[0] != "Qwen3ForCausalLM" {
				t.Errorf("architectures %v", m["architectures"])
			}
		}},
		{"GET", "/server_info", "", 200, "application/json", func(t *testing.T, b string) {
			m := jsonObj(t, b)
			if m["version"] != DefaultVersion || m["tp_size"] != float64(1) || m["model_path"] != "Qwen/Qwen3-8B" {
				t.Errorf("server_info version/tp_size/model_path: %v %v %v", m["version"], m["tp_size"], m["model_path"])
			}
			if _, ok := m["internal_states"].([]any); !ok {
				t.Errorf("server_info lacks internal_states")
			}
		}},
		{"GET", "/get_server_info", "", 200, "application/json", nil},
		{"GET", "/v1/models", "", 200, "application/json", func(t *testing.T, b string) {
			var m struct {
				Object string `json:"object"`
				Data   []struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			json.Unmarshal([]byte(b), &m)
			if m.Object != "list" || len(m.Data) != 1 || m.Data[0].ID != "Qwen/Qwen3-8B" {
				t.Errorf("models %s", b)
			}
		}},
		{"POST", "/v1/completions", `{"model":"Qwen/Qwen3-8B","prompt":"Hi there","max_tokens":4}`, 200, "application/json", func(t *testing.T, b string) {
			var m struct {
				Object  string `json:"object"`
				Choices []struct {
					Text         string `json:"text"`
					FinishReason string `json:"finish_reason"`
				} `json:"choices"`
				Usage struct {
					PromptTokens     int `json:"prompt_tokens"`
					CompletionTokens int `json:"completion_tokens"`
					TotalTokens      int `json:"total_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal([]byte(b), &m); err != nil {
				t.Fatal(err)
			}
			if m.Object != "text_completion" || len(m.Choices) != 1 || m.Choices[0].FinishReason != "length" || len(strings.Fields(m.Choices[0].Text)) != 4 {
				t.Errorf("completion %s", b)
			}
			if m.Usage.CompletionTokens != 4 || m.Usage.TotalTokens != m.Usage.PromptTokens+4 {
				t.Errorf("usage %+v", m.Usage)
			}
		}},
		{"POST", "/v1/completions", `{"model":"other","prompt":"x"}`, 404, "application/json", func(t *testing.T, b string) {
			if !strings.Contains(b, "model_not_found") {
				t.Errorf("unknown model body %s", b)
			}
		}},
		{"POST", "/v1/completions", `not json`, 400, "application/json", func(t *testing.T, b string) {
			m := jsonObj(t, b)
			if m["object"] != "error" || m["code"] != float64(400) {
				t.Errorf("400 body %s", b)
			}
		}},
		{"GET", "/v1/completions", "", 405, "application/json", nil},
		{"POST", "/v1/chat/completions", `{"model":"Qwen/Qwen3-8B","messages":[{"role":"user","content":"hi"}],"max_tokens":3}`, 200, "application/json", func(t *testing.T, b string) {
			if !strings.Contains(b, `"object":"chat.completion"`) || !strings.Contains(b, `"role":"assistant"`) {
				t.Errorf("chat %s", b)
			}
		}},
		{"POST", "/generate", `{"text":"Hello","sampling_params":{"max_new_tokens":3}}`, 200, "application/json", func(t *testing.T, b string) {
			var m struct {
				Text     string `json:"text"`
				MetaInfo struct {
					CompletionTokens int            `json:"completion_tokens"`
					FinishReason     map[string]any `json:"finish_reason"`
				} `json:"meta_info"`
			}
			json.Unmarshal([]byte(b), &m)
			if m.MetaInfo.CompletionTokens != 3 || m.MetaInfo.FinishReason["type"] != "length" || m.Text == "" {
				t.Errorf("generate %s", b)
			}
		}},
		{"PUT", "/generate", `{"input_ids":[1,2,3],"sampling_params":{"max_new_tokens":1}}`, 200, "application/json", nil},
		{"POST", "/generate", `{"sampling_params":{}}`, 400, "application/json", func(t *testing.T, b string) {
			if !strings.Contains(b, `"error"`) {
				t.Errorf("generate 400 %s", b)
			}
		}},
		{"GET", "/flush_cache", "", 200, "", func(t *testing.T, b string) {
			if !strings.HasPrefix(b, "Cache flushed.\n") {
				t.Errorf("flush body %q", b)
			}
		}},
		{"GET", "/metrics", "", 200, "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", func(t *testing.T, b string) {
			for _, m := range []string{"sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:prompt_tokens_total", "sglang:gen_throughput"} {
				if !strings.Contains(b, m) {
					t.Errorf("metrics lack %s", m)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			r := s.do(tc.method, tc.path, tc.body)
			if r.code != tc.code {
				t.Fatalf("status %d, want %d (body %q)", r.code, tc.code, r.body)
			}
			if got := r.hdr.Get("Content-Type"); got != tc.ctype && !(tc.ctype != "" && strings.HasPrefix(got, strings.SplitN(tc.ctype, ";", 2)[0])) {
				t.Errorf("Content-Type %q, want %q", got, tc.ctype)
			}
			if tc.check != nil {
				tc.check(t, r.body)
			}
		})
	}
}

func TestMetrics_OnlyWithEnableMetrics(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	if r := s.do("GET", "/metrics", ""); r.code != 404 {
		t.Errorf("/metrics without --enable-metrics: %d", r.code)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	key, admin := "k1", "adm"
	onlyKey := startSim(t, func(c *Config) { c.Args.APIKey = &key })
	both := startSim(t, func(c *Config) { c.Args.APIKey = &key; c.Args.AdminAPIKey = &admin })
	tests := []struct {
		name   string
		s      *testSim
		method string
		path   string
		token  string
		code   int
		body   string
	}{
		{"health open", onlyKey, "GET", "/health", "", 200, ""},
		{"model info needs key", onlyKey, "GET", "/model_info", "", 401, `{"error":"Unauthorized"}`},
		{"model info wrong key", onlyKey, "GET", "/model_info", "nope", 401, `{"error":"Unauthorized"}`},
		{"model info key", onlyKey, "GET", "/model_info", key, 200, ""},
		{"profile needs key", onlyKey, "POST", "/stop_profile", "", 401, `{"error":"Unauthorized"}`},
		{"profile with key reaches handler", onlyKey, "POST", "/stop_profile", key, 500, "Internal Server Error"},
		{"admin route refuses api key", both, "GET", "/flush_cache", key, 403, `{"error":"Forbidden"}`},
		{"admin route without token", both, "GET", "/flush_cache", "", 401, `{"error":"Unauthorized"}`},
		{"admin route admin key", both, "GET", "/flush_cache", admin, 200, ""},
		{"normal route admin key", both, "GET", "/v1/models", admin, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.token != "" {
				hdr = []string{"Authorization", "Bearer " + tc.token}
			}
			r := tc.s.do(tc.method, tc.path, "", hdr...)
			if r.code != tc.code {
				t.Fatalf("status %d, want %d (%s)", r.code, tc.code, r.body)
			}
			if tc.body != "" && r.body != tc.body {
				t.Errorf("body %q, want %q", r.body, tc.body)
			}
		})
	}
	// Like SGLang, the simulator exposes the key in its server_args log line
	// and in /server_info; sglangd has to redact both.
	if !strings.Contains(onlyKey.log.String(), "api_key='"+key+"'") || !strings.Contains(onlyKey.do("GET", "/server_info", "", "Authorization", "Bearer "+key).body, `"api_key":"k1"`) {
		t.Error("api key not reported the way SGLang reports it")
	}
}

func TestCompletions_StreamWithUsage(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	res, err := http.Post(s.URL()+"/v1/completions", "application/json",
		strings.NewReader(`{"model":"Qwen/Qwen3-8B","prompt":"Hello","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("Content-Type %q", ct)
	}
	var chunks []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "data: ") {
			chunks = append(chunks, strings.TrimPrefix(l, "data: "))
		}
	}
	if len(chunks) != 7 || chunks[6] != "[DONE]" {
		t.Fatalf("chunks (%d): %q", len(chunks), chunks)
	}
	if !strings.Contains(chunks[4], `"finish_reason":"length"`) || !strings.Contains(chunks[0], `"finish_reason":null`) {
		t.Errorf("finish reasons: %s / %s", chunks[0], chunks[4])
	}
	if !strings.Contains(chunks[5], `"completion_tokens":5`) || !strings.Contains(chunks[5], `"choices":[]`) {
		t.Errorf("usage chunk %s", chunks[5])
	}
}

func TestGenerate_Stream(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	r := s.do("POST", "/generate", `{"text":"Hello","sampling_params":{"max_new_tokens":3},"stream":true}`)
	if r.code != 200 || strings.Count(r.body, "data: ") != 4 || !strings.HasSuffix(r.body, "data: [DONE]\n\n") {
		t.Errorf("stream %d %q", r.code, r.body)
	}
}

func TestFlushCache_BusyIs400(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Sim.DecodeStepTime = 20 * time.Millisecond })
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.completeN(1, 20)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.engines[0].numRunning.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	r := s.do("POST", "/flush_cache", "")
	<-done
	if r.code != 400 || !strings.HasPrefix(r.body, "Cache flushed.") {
		t.Errorf("flush while running: %d %q", r.code, r.body)
	}
	if !strings.Contains(s.log.String(), "Cache not flushed because there are pending requests.") {
		t.Error("missing cache-not-flushed log")
	}
}

// TestHealth_503DuringWarmup: connections are dropped while loading, /health
// answers 503 while the warm-up request runs, 200 afterwards, and the ready
// line is logged.
func TestHealth_503DuringWarmup(t *testing.T) {
	t.Parallel()
	a := DefaultServerArgs()
	a.ModelPath = "m"
	a.Port = 0
	logs := &testutil.SyncBuffer{}
	sim := fastSim()
	sim.LoadTime = 50 * time.Millisecond
	sim.DecodeStepTime = 60 * time.Millisecond // warm-up: 8 batches ~ 0.5 s
	s, err := Start(context.Background(), Config{Args: a, Sim: sim, Log: logs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var codes []int
	infoDuringWarmup := 0
	for {
		res, err := http.Get(s.URL() + "/health")
		if err == nil {
			res.Body.Close()
			codes = append(codes, res.StatusCode)
			if res.StatusCode == 200 {
				break
			}
			if res.StatusCode == 503 && infoDuringWarmup == 0 {
				// /model_info answers 200 even before warm-up ends.
				if r, err := http.Get(s.URL() + "/model_info"); err == nil {
					r.Body.Close()
					infoDuringWarmup = r.StatusCode
				}
			}
		}
		select {
		case <-s.Done():
			t.Fatalf("server stopped: %v", s.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if infoDuringWarmup != 200 {
		t.Errorf("/model_info during warm-up: %d", infoDuringWarmup)
	}
	if len(codes) < 2 || codes[0] != 503 {
		t.Errorf("health codes during start-up %v, want 503s then 200", codes)
	}
	select {
	case <-s.Ready():
	default:
		t.Error("health 200 before Ready")
	}
	lines := logs.String()
	if i, j := strings.Index(lines, "Uvicorn running on"), strings.Index(lines, "The server is fired up and ready to roll!"); i < 0 || j < i {
		t.Errorf("start-up log order wrong:\n%s", lines)
	}
}

func TestHealth_WithoutGeneration(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Env["SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION"] = "false" })
	before := s.ForwardCount(0)
	if r := s.do("GET", "/health", ""); r.code != 200 {
		t.Fatalf("health %d", r.code)
	}
	if after := s.ForwardCount(0); after != before {
		t.Errorf("health without generation ran a batch: %d -> %d", before, after)
	}
}

func TestHealth_GenerationRunsABatch(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	before := s.ForwardCount(0)
	if r := s.do("GET", "/health", ""); r.code != 200 {
		t.Fatalf("health %d", r.code)
	}
	if after := s.ForwardCount(0); after != before+1 {
		t.Errorf("health generation: forward count %d -> %d, want +1", before, after)
	}
}

func TestWarmupCounts8Batches(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	if got := s.ForwardCount(0); got != 8 {
		t.Errorf("forward count after warm-up = %d, want 8 (one prefill + 7 decodes of max_new_tokens=8)", got)
	}
	skip := startSim(t, func(c *Config) { c.Args.SkipServerWarmup = true })
	if got := skip.ForwardCount(0); got != 0 {
		t.Errorf("forward count with --skip-server-warmup = %d", got)
	}
}

func TestLogLinePrefixes(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Args.TPSize = 2; c.Args.DPSize = 2; c.Args.PPSize = 2 })
	re := regexp.MustCompile(`^\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}( DP[01] PP[01] TP[01])?\] `)
	for _, l := range strings.Split(strings.TrimSpace(s.log.String()), "\n") {
		if !re.MatchString(l) {
			t.Errorf("log line without SGLang prefix: %q", l)
		}
	}
	if !strings.Contains(s.log.String(), " DP1 PP1 TP1] Load weight end.") {
		t.Errorf("no rank line for DP1 PP1 TP1:\n%s", s.log)
	}
}

func expectEq(t *testing.T, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}

func jsonObj(t *testing.T, b string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, b)
	}
	return m
}

func TestModelInfo_ReadsLocalConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"architectures":["MistralForCausalLM"],"model_type":"mistral"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startSim(t, func(c *Config) { c.Args.ModelPath = dir })
	m := jsonObj(t, s.do("GET", "/model_info", "").body)
	if m["model_type"] != "mistral" || m["model_path"] != dir {
		t.Errorf("model_info %v", m)
	}
}
