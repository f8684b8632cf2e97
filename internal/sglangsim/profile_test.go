package sglangsim

import (
	"github.com/sglangd/sglangd/internal/testutil"

	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const traceFile = `^(\S+-)?\d+\.\d+-TP-\d+.*\.trace\.json\.gz$`

// TestManualClientFlow is DEVELOPERS.md's manual flow: start_profile, five
// /v1/completions (max_tokens 30, temperature 0.1), stop_profile; one valid
// gzip per rank holding JSON with traceEvents and the batches that ran.
func TestManualClientFlow(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Args.TPSize = 2 })
	if r := s.do("POST", "/start_profile", ""); r.code != 200 || r.body != "Start profiling.\n" {
		t.Fatalf("start: %d %q", r.code, r.body)
	}
	s.completeN(5, 30)
	if r := s.do("POST", "/stop_profile", ""); r.code != 200 || r.body != "Stop profiling. This will take some time.\n" {
		t.Fatalf("stop: %d %q", r.code, r.body)
	}
	// stop blocks until files are written: no polling needed.
	files := listFiles(s.dir, traceFile)
	if len(files) != 2 {
		t.Fatalf("files after stop: %v", files)
	}
	idRE := regexp.MustCompile(`^(\d+\.\d+)-TP-([01])\.trace\.json\.gz$`)
	for i, f := range files {
		m := idRE.FindStringSubmatch(f)
		if m == nil || m[2] != fmt.Sprint(i) {
			t.Fatalf("file name %s", f)
		}
		if !strings.Contains(s.log.String(), "(with profile id: "+m[1]+")") {
			t.Errorf("profile id %s not in the start log", m[1])
		}
		d := loadTrace(t, filepath.Join(s.dir, f))
		if d.DistributedInfo.Rank != i || d.DistributedInfo.WorldSize != 2 {
			t.Errorf("%s distributedInfo %+v", f, d.DistributedInfo)
		}
		steps := d.steps()
		decodes, generated := 0, 0
		for _, st := range steps {
			m := stepRE.FindStringSubmatch(st)
			if m[1] == "DECODE" {
				decodes++
				var bs int
				fmt.Sscan(m[2], &bs)
				generated += bs
			} else {
				var bs int
				fmt.Sscan(m[2], &bs)
				generated += bs
			}
		}
		// 5 x 30 tokens (the first of each from its prefill) plus any health
		// checks: every token is produced by exactly one captured batch.
		if generated != 150 || decodes < 29 {
			t.Errorf("%s: %d tokens in %d decode steps, steps %v", f, generated, decodes, steps)
		}
	}
	for _, want := range []string{
		" TP0] Profiling starts. Traces will be saved to: " + s.dir + " (with profile id: ",
		" TP1] Profiling starts. Traces will be saved to: ",
		" TP0] Stop profiling...",
		" TP1] Profiling done. Traces are saved to: " + s.dir,
	} {
		if !strings.Contains(s.log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestProfile_DoubleStartAndIdleStopAre500(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	r := s.do("GET", "/stop_profile", "")
	if r.code != 500 || r.body != "Internal Server Error" {
		t.Fatalf("stop while idle: %d %q", r.code, r.body)
	}
	waitLog(t, s.log, "RuntimeError: Profiling is not in progress. Call /start_profile first.")
	if r := s.do("GET", "/start_profile", ""); r.code != 200 {
		t.Fatalf("start: %d", r.code)
	}
	for _, body := range []string{"", `{"start_step": 1000}`, `{"profile_by_stage": true, "num_steps": 2}`} {
		r := s.do("POST", "/start_profile", body)
		if r.code != 500 || r.body != "Internal Server Error" {
			t.Errorf("second start %q: %d %q", body, r.code, r.body)
		}
	}
	waitLog(t, s.log, "RuntimeError: Profiling is already in progress. Call /stop_profile first.")
	if r := s.do("GET", "/stop_profile", ""); r.code != 200 {
		t.Fatalf("stop: %d", r.code)
	}
	if r := s.do("GET", "/stop_profile", ""); r.code != 500 {
		t.Errorf("second stop: %d", r.code)
	}
}

func TestProfile_InvalidBodyIs400(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	for _, body := range []string{`{"num_steps": "many"}`, `[1,2]`, `{"activities": "CPU"}`, `{"with_stack": "perhaps"}`} {
		r := s.do("POST", "/start_profile", body)
		if r.code != 400 {
			t.Errorf("%s: %d %s", body, r.code, r.body)
			continue
		}
		m := jsonObj(t, r.body)
		if m["object"] != "error" || m["type"] != "Bad Request" || m["code"] != float64(400) {
			t.Errorf("%s: body %s", body, r.body)
		}
	}
}

// TestProfile_NumStepsAutoStop: num_steps alone starts now and stops at
// counter+num_steps, capturing num_steps-1 batches, with no stop call; a
// later stop is a 500.
func TestProfile_NumStepsAutoStop(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	if r := s.do("POST", "/start_profile", `{"num_steps": "4"}`); r.code != 200 {
		t.Fatalf("start: %d", r.code)
	}
	s.complete(10)
	files := waitFiles(t, s.dir, traceFile, []string{fileWithID(t, s.log.String(), "TP-0")})
	d := loadTrace(t, filepath.Join(s.dir, files[0]))
	if got := d.steps(); len(got) != 3 {
		t.Errorf("captured %d steps %v, want num_steps-1 = 3", len(got), got)
	}
	waitLog(t, s.log, "Profiling done. Traces are saved to: ")
	if r := s.do("POST", "/stop_profile", ""); r.code != 500 {
		t.Errorf("stop after auto-stop: %d", r.code)
	}
}

// TestProfile_StartStepAbsolute: start_step is an absolute batch number;
// with num_steps it captures exactly num_steps batches from there; a value
// in the past means the next batch.
func TestProfile_StartStepAbsolute(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	ct := s.ForwardCount(0)
	if r := s.do("POST", "/start_profile", fmt.Sprintf(`{"start_step": %d, "num_steps": 3}`, ct+5)); r.code != 200 {
		t.Fatalf("start: %d", r.code)
	}
	if strings.Contains(s.log.String(), "Profiling starts") {
		t.Fatal("deferred start logged before its step")
	}
	s.complete(12) // batches ct+1 .. ct+12
	name := fileWithID(t, s.log.String(), "TP-0")
	waitFiles(t, s.dir, traceFile, []string{name})
	d := loadTrace(t, filepath.Join(s.dir, name))
	want := []string{"step[DECODE bs=1]", "step[DECODE bs=1]", "step[DECODE bs=1]"}
	if got := d.steps(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("steps %v, want %v (batches %d..%d)", got, want, ct+5, ct+7)
	}

	// A start_step in the past starts at the next batch.
	os.RemoveAll(s.dir)
	if r := s.do("POST", "/start_profile", `{"start_step": 1, "num_steps": 2}`); r.code != 200 {
		t.Fatalf("start: %d", r.code)
	}
	// Two captured prefills; the third batch triggers the auto-stop (with no
	// traffic the stop never fires).
	s.complete(1)
	s.complete(1)
	s.complete(1)
	name2 := fileWithID(t, s.log.String(), "TP-0")
	waitFiles(t, s.dir, traceFile, []string{name2})
	if got := loadTrace(t, filepath.Join(s.dir, name2)).steps(); len(got) != 2 || !strings.HasPrefix(got[0], "step[EXTEND") {
		t.Errorf("past start_step captured %v, want the next two prefills", got)
	}
}

// TestProfile_ByStage writes -EXTEND and -DECODE files, each after
// num_steps batches of its stage.
func TestProfile_ByStage(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Args.TPSize = 2 })
	if r := s.do("POST", "/start_profile", `{"profile_by_stage": true, "num_steps": 3, "profile_prefix": "stage"}`); r.code != 200 {
		t.Fatalf("start: %d", r.code)
	}
	s.complete(8)
	id := profileIDFromLog(t, s.log.String())
	files := waitFiles(t, s.dir, traceFile, []string{
		"stage-" + id + "-TP-0-DECODE.trace.json.gz", "stage-" + id + "-TP-0-EXTEND.trace.json.gz",
		"stage-" + id + "-TP-1-DECODE.trace.json.gz", "stage-" + id + "-TP-1-EXTEND.trace.json.gz",
	})
	for _, f := range files {
		steps := loadTrace(t, filepath.Join(s.dir, f)).steps()
		stage := "EXTEND"
		if strings.Contains(f, "DECODE") {
			stage = "DECODE"
			if len(steps) != 3 {
				t.Errorf("%s: %d steps, want num_steps=3", f, len(steps))
			}
		}
		for _, st := range steps {
			if !strings.Contains(st, stage) {
				t.Errorf("%s holds %s", f, st)
			}
		}
	}
	for _, want := range []string{"Profiling starts for EXTEND.", "Profiling starts for DECODE.", "Stop profiling-EXTEND...", "Stop profiling-DECODE..."} {
		if !strings.Contains(s.log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestProfile_FileNamesByTopology checks every rank file for TP=4, DP=2 and
// PP=2 (with a prefix), and that PP>0 ranks appear after the answer.
func TestProfile_FileNamesByTopology(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		tp, dp, pp int
		prefix     string
		want       []string
	}{
		{"tp1", 1, 1, 1, "", []string{"ID-TP-0"}},
		{"tp4", 4, 1, 1, "", []string{"ID-TP-0", "ID-TP-1", "ID-TP-2", "ID-TP-3"}},
		{"dp2", 1, 2, 1, "", []string{"ID-TP-0-DP-0", "ID-TP-0-DP-1"}},
		{"pp2 prefix", 2, 1, 2, "run7", []string{"run7-ID-TP-0-PP-0", "run7-ID-TP-0-PP-1", "run7-ID-TP-1-PP-0", "run7-ID-TP-1-PP-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startSim(t, func(c *Config) { c.Args.TPSize, c.Args.DPSize, c.Args.PPSize = tc.tp, tc.dp, tc.pp })
			body := ""
			if tc.prefix != "" {
				body = `{"profile_prefix": "` + tc.prefix + `"}`
			}
			if r := s.do("POST", "/start_profile", body); r.code != 200 {
				t.Fatalf("start: %d", r.code)
			}
			s.completeN(2*tc.dp, 3)
			if r := s.do("POST", "/stop_profile", ""); r.code != 200 {
				t.Fatalf("stop: %d", r.code)
			}
			id := profileIDFromLog(t, s.log.String())
			var want []string
			for _, w := range tc.want {
				want = append(want, strings.Replace(w, "ID", id, 1)+".trace.json.gz")
			}
			files := waitFiles(t, s.dir, traceFile, want)
			for _, f := range files {
				d := loadTrace(t, filepath.Join(s.dir, f))
				if d.DistributedInfo.WorldSize != tc.tp*tc.pp {
					t.Errorf("%s world_size %d", f, d.DistributedInfo.WorldSize)
				}
			}
		})
	}
}

func TestProfile_OutputDirPrecedence(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	body := filepath.Join(t.TempDir(), "from-body")
	if r := s.do("POST", "/start_profile", `{"output_dir": "`+body+`", "num_steps": 2}`); r.code != 200 {
		t.Fatal(r.code)
	}
	s.complete(3)
	waitFiles(t, body, traceFile, []string{fileWithID(t, s.log.String(), "TP-0")})
	if files := listFiles(s.dir, traceFile); len(files) != 0 {
		t.Errorf("env dir used although the body named one: %v", files)
	}

	// No body dir: SGLANG_TORCH_PROFILER_DIR; neither: /tmp (logged only).
	noEnv := startSim(t, func(c *Config) { delete(c.Env, "SGLANG_TORCH_PROFILER_DIR") })
	if r := noEnv.do("POST", "/start_profile", ""); r.code != 200 {
		t.Fatal(r.code)
	}
	if !strings.Contains(noEnv.log.String(), "Traces will be saved to: /tmp (with profile id:") {
		t.Errorf("default dir not /tmp:\n%s", noEnv.log)
	}
}

// TestStop_BlocksWhileExportingAnd503: the scheduler writes the trace
// in place (the .gz grows before stop answers) and /health is 503 during the
// export, 200 afterwards.
func TestStop_BlocksWhileExportingAnd503(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) {
		c.Sim.ExportPerMB = time.Second
		c.Env["SGLANG_HEALTH_CHECK_TIMEOUT"] = "0.05"
	})
	if r := s.do("POST", "/start_profile", ""); r.code != 200 {
		t.Fatal(r.code)
	}
	s.completeN(2, 20)
	stopped := make(chan resp, 1)
	go func() { stopped <- doHTTP(t, s.URL(), "POST", "/stop_profile", "") }()
	waitLog(t, s.log, "Stop profiling...")
	var sizes []int64
	health := map[int]int{}
	for done := false; !done; {
		select {
		case r := <-stopped:
			if r.code != 200 {
				t.Fatalf("stop: %d", r.code)
			}
			done = true
		default:
			for _, f := range listFiles(s.dir, traceFile) {
				if fi, err := os.Stat(filepath.Join(s.dir, f)); err == nil {
					sizes = append(sizes, fi.Size())
				}
			}
			res, err := http.Get(s.URL() + "/health")
			if err == nil {
				res.Body.Close()
				health[res.StatusCode]++
			}
		}
	}
	if health[503] == 0 {
		t.Errorf("no 503 from /health during the export: %v", health)
	}
	grew := false
	for i := 1; i < len(sizes); i++ {
		grew = grew || sizes[i] > sizes[i-1]
	}
	if !grew {
		t.Errorf("trace file did not grow while stop was pending: sizes %v", sizes)
	}
	files := listFiles(s.dir, traceFile)
	if len(files) != 1 || !allComplete(s.dir, files) {
		t.Fatalf("after stop: %v complete=%v", files, allComplete(s.dir, files))
	}
	if r := s.do("GET", "/health", ""); r.code != 200 {
		t.Errorf("health after export: %d", r.code)
	}
	if !strings.Contains(s.log.String(), "Health check failed.") {
		t.Error("no health-check failure logged")
	}
}

func TestMergeProfiles(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Args.TPSize = 2 })
	if r := s.do("POST", "/start_profile", `{"merge_profiles": true}`); r.code != 200 {
		t.Fatal(r.code)
	}
	s.complete(3)
	if r := s.do("POST", "/stop_profile", ""); r.code != 200 {
		t.Fatal(r.code)
	}
	id := profileIDFromLog(t, s.log.String())
	merged := filepath.Join(s.dir, MergedFileName(id))
	d := loadTrace(t, merged)
	labels := map[string]bool{}
	gpuSort := map[float64]bool{}
	for _, e := range d.TraceEvents {
		pid, ok := e["pid"].(string)
		if !ok {
			t.Fatalf("merged pid not a string: %v", e["pid"])
		}
		labels[strings.SplitN(pid, " ", 2)[0]] = true
		if e["name"] == "process_sort_index" {
			if args, _ := e["args"].(map[string]any); args != nil && strings.HasSuffix(pid, " 1") {
				gpuSort[args["sort_index"].(float64)] = true
			}
		}
	}
	if !labels["[TP00]"] || !labels["[TP01]"] || len(labels) != 2 {
		t.Errorf("pid labels %v", labels)
	}
	if !gpuSort[1] || !gpuSort[101] {
		t.Errorf("GPU 1 sort indexes %v, want 1 (TP0) and 101 (TP1)", gpuSort)
	}
	logs := s.log.String()
	for _, want := range []string{"Starting profile merge...", "Found 2 trace files to merge", "Profile merge completed: " + merged,
		fmt.Sprintf("Merged trace: %s (Events: %d, Files: 2)", merged, len(d.TraceEvents))} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestMergeProfiles_PrefixBreaksDiscovery(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	if r := s.do("POST", "/start_profile", `{"merge_profiles": true, "profile_prefix": "x"}`); r.code != 200 {
		t.Fatal(r.code)
	}
	s.complete(2)
	if r := s.do("POST", "/stop_profile", ""); r.code != 200 {
		t.Fatal(r.code)
	}
	id := profileIDFromLog(t, s.log.String())
	if !strings.Contains(s.log.String(), "Failed to merge profiles: No trace files found for profile_id: "+id) ||
		!strings.Contains(s.log.String(), "Merge failed: No trace files found") {
		t.Errorf("merge with prefix did not fail as SGLang's does:\n%s", s.log)
	}
}

func TestProfile_MemActivity(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	if r := s.do("POST", "/start_profile", `{"activities": ["CPU", "GPU", "MEM", "BOGUS"]}`); r.code != 200 {
		t.Fatal(r.code)
	}
	s.complete(2)
	if r := s.do("POST", "/stop_profile", ""); r.code != 200 {
		t.Fatal(r.code)
	}
	if got := listFiles(s.dir, `^\d+\.\d+-TP-0-memory\.pickle$`); len(got) != 1 {
		t.Errorf("memory snapshot files %v", listFiles(s.dir, "."))
	}
	if got := listFiles(s.dir, traceFile); len(got) != 1 {
		t.Errorf("trace files %v", got)
	}
}

func TestFault_CrashAtStep(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Sim.CrashAtStep = 12 })
	go http.Post(s.URL()+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"x","max_tokens":10}`))
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("server did not die")
	}
	if !errors.Is(s.Err(), ErrCrashed) {
		t.Errorf("Err = %v", s.Err())
	}
	if !strings.Contains(s.log.String(), "Scheduler hit an exception: Traceback (most recent call last):") {
		t.Errorf("no crash traceback:\n%s", s.log)
	}
	if _, err := http.Get(s.URL() + "/health"); err == nil {
		t.Error("crashed server still answers")
	}
}

func TestFault_ByStageWithoutNumStepsCrashes(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	if r := s.do("POST", "/start_profile", `{"profile_by_stage": true}`); r.code != 200 {
		t.Fatal(r.code)
	}
	go http.Post(s.URL()+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"x","max_tokens":2}`))
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("server did not die")
	}
	if !strings.Contains(s.log.String(), "TypeError: '>' not supported between instances of 'int' and 'NoneType'") {
		t.Errorf("log:\n%s", s.log)
	}
}

// TestFault_StartupErrors: a failed model load or warm-up ends the server
// before it gets ready, logging what SGLang logs.
func TestFault_StartupErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fault    func(*SimOptions)
		err      string
		want     []string
		unwanted []string
	}{
		{name: "warm-up", fault: func(o *SimOptions) { o.WarmupError = "CUDA out of memory" }, err: "warm-up failed",
			want:     []string{"Initialization failed. warmup error: CUDA out of memory"},
			unwanted: []string{"ready to roll"}},
		{name: "model load", fault: func(o *SimOptions) {
			o.LoadError = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
		}, err: "model loading failed",
			want: []string{" TP0] Scheduler hit an exception: Traceback (most recent call last):", "in load_model",
				"\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n", "Received sigquit from a child process"},
			unwanted: []string{"Load weight end", "Uvicorn running", "ready to roll"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := DefaultServerArgs()
			a.ModelPath, a.Port, a.TPSize = "m", 0, 2
			logs := &testutil.SyncBuffer{}
			sim := fastSim()
			tc.fault(&sim)
			s, err := Start(context.Background(), Config{Args: a, Sim: sim, Log: logs})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Wait(context.Background()); !errors.Is(err, ErrCrashed) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Wait = %v, want ErrCrashed: %s", err, tc.err)
			}
			select {
			case <-s.Ready():
				t.Error("server got ready")
			default:
			}
			log := logs.String()
			for _, w := range tc.want {
				if !strings.Contains(log, w) {
					t.Errorf("log lacks %q:\n%s", w, log)
				}
			}
			for _, w := range tc.unwanted {
				if strings.Contains(log, w) {
					t.Errorf("log has %q:\n%s", w, log)
				}
			}
		})
	}
}

func TestFault_HangStopProfile(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Sim.HangStopProfile = true })
	s.do("POST", "/start_profile", "")
	s.complete(2)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL()+"/stop_profile", nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("hung stop answered %d", res.StatusCode)
	}
	if files := listFiles(s.dir, traceFile); len(files) != 1 || allComplete(s.dir, files) {
		t.Errorf("hung export should leave one incomplete file: %v", files)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not interrupt the hung export")
	}
}

func TestFault_DamagedAndMissingRanks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		sim   func(*SimOptions)
		check func(t *testing.T, dir string, files []string)
	}{
		{"truncate rank 1", func(o *SimOptions) { o.CorruptRank = IntPtr(1) }, func(t *testing.T, dir string, files []string) {
			if len(files) != 3 {
				t.Fatalf("files %v", files)
			}
			for i, f := range files {
				_, err := readGz(filepath.Join(dir, f))
				if (err != nil) != (i == 1) {
					t.Errorf("%s read err = %v", f, err)
				}
			}
		}},
		{"corrupt rank 2", func(o *SimOptions) { o.CorruptRank = IntPtr(2); o.CorruptMode = "corrupt" }, func(t *testing.T, dir string, files []string) {
			if _, err := readGz(filepath.Join(dir, files[2])); err == nil {
				t.Errorf("%s reads cleanly", files[2])
			}
			if fi, _ := os.Stat(filepath.Join(dir, files[2])); fi.Size() < 1000 {
				t.Errorf("corrupt file was truncated instead: %d bytes", fi.Size())
			}
		}},
		{"missing rank 0", func(o *SimOptions) { o.MissingRank = IntPtr(0) }, func(t *testing.T, dir string, files []string) {
			if len(files) != 2 || strings.Contains(files[0], "TP-0") {
				t.Errorf("files %v, want TP-1 and TP-2 only", files)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startSim(t, func(c *Config) { c.Args.TPSize = 3; tc.sim(&c.Sim) })
			s.do("POST", "/start_profile", "")
			s.complete(3)
			if r := s.do("POST", "/stop_profile", ""); r.code != 200 {
				t.Fatal(r.code)
			}
			tc.check(t, s.dir, listFiles(s.dir, traceFile))
		})
	}
}

func TestFault_SlowResponse(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Sim.SlowResponse = 150 * time.Millisecond })
	start := time.Now()
	s.do("GET", "/model_info", "")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("response after %v, want at least the configured 150ms", d)
	}
}

// TestProfileRequests_OneAtATime: concurrent start calls are serialised; one
// wins, the other gets the double-start 500.
func TestProfileRequests_OneAtATime(t *testing.T) {
	t.Parallel()
	s := startSim(t, nil)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = doHTTP(t, s.URL(), "POST", "/start_profile", "").code
		}()
	}
	wg.Wait()
	if codes[0]+codes[1] != 700 {
		t.Errorf("codes %v, want one 200 and one 500", codes)
	}
}

var profileIDRE = regexp.MustCompile(`\(with profile id: (\d+\.\d+)\)`)

func profileIDFromLog(t *testing.T, logs string) string {
	t.Helper()
	m := profileIDRE.FindAllStringSubmatch(logs, -1)
	if len(m) == 0 {
		t.Fatalf("no profile id in log:\n%s", logs)
	}
	return m[len(m)-1][1]
}

func fileWithID(t *testing.T, logs, rank string) string {
	t.Helper()
	return profileIDFromLog(t, logs) + "-" + rank + ".trace.json.gz"
}

// TestProfileV2: SGLANG_PROFILE_V2 names stage files in lower case (and,
// before sglang#25446, without DP/PP parts, so such ranks overwrite each
// other), and anything but by-stage + num_steps kills the scheduler.
func TestProfileV2(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Env["SGLANG_PROFILE_V2"] = "1" })
	if r := s.do("POST", "/start_profile", `{"profile_by_stage": true, "num_steps": 2}`); r.code != 200 {
		t.Fatalf("start: %d", r.code)
	}
	s.complete(5)
	id := profileIDFromLog(t, s.log.String())
	waitFiles(t, s.dir, traceFile, []string{id + "-TP-0-decode.trace.json.gz", id + "-TP-0-prefill.trace.json.gz"})
	waitLog(t, s.log, "Profiling starts for prefill.")

	crash := startSim(t, func(c *Config) { c.Env["SGLANG_PROFILE_V2"] = "true" })
	res, err := http.Post(crash.URL()+"/start_profile", "application/json", strings.NewReader(`{"num_steps": 3}`))
	if err == nil {
		res.Body.Close()
		t.Errorf("plain start under V2 answered %d; the scheduler should die without a reply", res.StatusCode)
	}
	<-crash.Done()
	if !errors.Is(crash.Err(), ErrCrashed) || !strings.Contains(crash.log.String(), "NotImplementedError") {
		t.Errorf("Err %v log:\n%s", crash.Err(), crash.log)
	}
}

// TestWatchdog_LongAutoStopExport: an auto-stop export running inside a
// batch for longer than --watchdog-timeout kills the server.
func TestWatchdog_LongAutoStopExport(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Args.WatchdogTimeout = 0.05; c.Sim.ExportPerMB = 2 * time.Second })
	if r := s.do("POST", "/start_profile", `{"num_steps": 3}`); r.code != 200 {
		t.Fatal(r.code)
	}
	go http.Post(s.URL()+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"x","max_tokens":10}`))
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("watchdog did not fire")
	}
	if !errors.Is(s.Err(), ErrCrashed) || !strings.Contains(s.log.String(), "Scheduler watchdog timeout (self.watchdog_timeout=0.05") {
		t.Errorf("Err %v log:\n%s", s.Err(), s.log)
	}
}

func TestFlushCache_TimeoutWaitsForIdle(t *testing.T) {
	t.Parallel()
	s := startSim(t, func(c *Config) { c.Sim.DecodeStepTime = 10 * time.Millisecond })
	done := make(chan struct{})
	go func() { defer close(done); s.completeN(1, 10) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.engines[0].numRunning.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if r := s.do("POST", "/flush_cache?timeout=30", ""); r.code != 200 {
		t.Errorf("flush with timeout: %d %q", r.code, r.body)
	}
	<-done
}
