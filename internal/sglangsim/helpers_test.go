package sglangsim

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sglangd/sglangd/internal/testutil"
)

type testSim struct {
	*Server
	t   *testing.T
	log *testutil.SyncBuffer
	dir string
}

func fastSim() SimOptions { return TestOptions() }

// startSim starts a simulator on 127.0.0.1:0 and waits until it is ready.
// mutate may adjust the configuration (args, env, sim options) first.
func startSim(t *testing.T, mutate func(*Config)) *testSim {
	t.Helper()
	a := DefaultServerArgs()
	a.ModelPath = "Qwen/Qwen3-8B"
	a.Port = 0
	logs := &testutil.SyncBuffer{}
	dir := t.TempDir()
	cfg := Config{Args: a, Sim: fastSim(), Log: logs, Env: map[string]string{
		"SGLANG_TORCH_PROFILER_DIR":   filepath.Join(dir, "traces"),
		"TMPDIR":                      dir,
		"SGLANG_HEALTH_CHECK_TIMEOUT": "5",
	}}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start simulator: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	select {
	case <-s.Ready():
	case <-s.Done():
		t.Fatalf("simulator stopped before ready: %v\n%s", s.Err(), logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("simulator not ready after 30s\n%s", logs)
	}
	return &testSim{Server: s, t: t, log: logs, dir: filepath.Join(dir, "traces")}
}

type resp struct {
	code int
	body string
	hdr  http.Header
}

func (s *testSim) do(method, path, body string, hdr ...string) resp {
	s.t.Helper()
	return doHTTP(s.t, s.URL(), method, path, body, hdr...)
}

func doHTTP(t *testing.T, base, method, path, body string, hdr ...string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{code: res.StatusCode, body: string(b), hdr: res.Header}
}

// complete sends one /v1/completions request like the manual client flow.
func (s *testSim) complete(maxTokens int) resp {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"model": "Qwen/Qwen3-8B", "prompt": "Explain CUDA graphs in one paragraph.", "max_tokens": maxTokens, "temperature": 0.1})
	r := s.do("POST", "/v1/completions", string(body))
	if r.code != 200 {
		s.t.Fatalf("completion: %d %s", r.code, r.body)
	}
	return r
}

// completeN sends n completions concurrently.
func (s *testSim) completeN(n, maxTokens int) {
	s.t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(map[string]any{"model": "Qwen/Qwen3-8B", "prompt": "Explain CUDA graphs in one paragraph.", "max_tokens": maxTokens, "temperature": 0.1})
			res, err := http.Post(s.URL()+"/v1/completions", "application/json", strings.NewReader(string(body)))
			if err != nil {
				s.t.Errorf("completion: %v", err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				s.t.Errorf("completion status %d", res.StatusCode)
			}
		}()
	}
	wg.Wait()
}

// waitFiles polls dir until the names matching the pattern equal want (PP>0
// ranks and auto-stop exports finish after the HTTP answer).
func waitFiles(t *testing.T, dir, pattern string, want []string) []string {
	t.Helper()
	sort.Strings(want)
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		got = listFiles(dir, pattern)
		if strings.Join(got, "\n") == strings.Join(want, "\n") && allComplete(dir, got) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("files in %s:\n%s\nwant:\n%s", dir, strings.Join(got, "\n"), strings.Join(want, "\n"))
	return nil
}

func listFiles(dir, pattern string) []string {
	ents, _ := os.ReadDir(dir)
	re := regexp.MustCompile(pattern)
	var out []string
	for _, e := range ents {
		if re.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func allComplete(dir string, names []string) bool {
	for _, n := range names {
		if _, err := readGz(filepath.Join(dir, n)); err != nil {
			return false
		}
	}
	return true
}

func readGz(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// traceDoc is the part of a Kineto trace the tests inspect.
type traceDoc struct {
	DistributedInfo struct {
		Rank      int `json:"rank"`
		WorldSize int `json:"world_size"`
	} `json:"distributedInfo"`
	BaseTimeNanoseconds int64            `json:"baseTimeNanoseconds"`
	TraceEvents         []map[string]any `json:"traceEvents"`
}

func loadTrace(t *testing.T, path string) traceDoc {
	t.Helper()
	b, err := readGz(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var d traceDoc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if len(d.TraceEvents) == 0 {
		t.Fatalf("%s has no traceEvents", path)
	}
	return d
}

var stepRE = regexp.MustCompile(`^step\[(EXTEND|DECODE) bs=(\d+)(?: toks=(\d+))?\]$`)

// steps returns the step annotation names of a trace, in time order.
func (d traceDoc) steps() []string {
	type st struct {
		ts   float64
		name string
	}
	var out []st
	for _, e := range d.TraceEvents {
		if e["cat"] == "user_annotation" {
			if n, _ := e["name"].(string); stepRE.MatchString(n) {
				out = append(out, st{e["ts"].(float64), n})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ts < out[j].ts })
	names := make([]string, len(out))
	for i, s := range out {
		names[i] = s.name
	}
	return names
}

func waitLog(t *testing.T, logs *testutil.SyncBuffer, substr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(logs.String(), substr) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("log never contained %q:\n%s", substr, logs)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
