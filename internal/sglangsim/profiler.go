package sglangsim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// ProfileRequest is the /start_profile body (SGLang's ProfileReqInput). Nil
// pointers are fields the client did not send.
type ProfileRequest struct {
	OutputDir      *string  `json:"output_dir,omitempty"`
	StartStep      *int     `json:"start_step,omitempty"`
	NumSteps       *int     `json:"num_steps,omitempty"`
	Activities     []string `json:"activities,omitempty"`
	WithStack      *bool    `json:"with_stack,omitempty"`
	RecordShapes   *bool    `json:"record_shapes,omitempty"`
	ProfileByStage bool     `json:"profile_by_stage,omitempty"`
	MergeProfiles  bool     `json:"merge_profiles,omitempty"`
	ProfilePrefix  *string  `json:"profile_prefix,omitempty"`
	ProfileStages  []string `json:"profile_stages,omitempty"`

	// profileID is assigned by the HTTP side: the server's Unix time as text.
	profileID string
}

// knownActivities are the activity names SGLang maps; others are dropped.
var knownActivities = map[string]bool{"CPU": true, "GPU": true, "MEM": true, "RPD": true, "CUDA_PROFILER": true, "XPU": true}

// ParseProfileRequest decodes a /start_profile body the way FastAPI and
// pydantic would: an empty body means defaults, numbers and booleans sent
// as strings are coerced, unknown fields are ignored and a wrong type is an
// invalid-argument error.
func ParseProfileRequest(body []byte) (ProfileRequest, error) {
	var req ProfileRequest
	if len(strings.TrimSpace(string(body))) == 0 || strings.TrimSpace(string(body)) == "null" {
		return req, nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return req, fmt.Errorf("body: expected a JSON object: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	var err error
	str := func(k string) (*string, error) {
		v, ok := raw[k]
		if !ok || string(v) == "null" {
			return nil, nil
		}
		var s string
		if e := json.Unmarshal(v, &s); e != nil {
			return nil, fmt.Errorf("%s: expected a string, got %s: %w", k, v, errdefs.ErrInvalidArgument)
		}
		return &s, nil
	}
	num := func(k string) (*int, error) {
		v, ok := raw[k]
		if !ok || string(v) == "null" {
			return nil, nil
		}
		var n json.Number
		var s string
		if json.Unmarshal(v, &s) == nil {
			n = json.Number(strings.TrimSpace(s))
		} else if e := json.Unmarshal(v, &n); e != nil {
			return nil, fmt.Errorf("%s: expected an integer, got %s: %w", k, v, errdefs.ErrInvalidArgument)
		}
		i, e := strconv.Atoi(string(n))
		if e != nil {
			f, fe := strconv.ParseFloat(string(n), 64)
			if fe != nil || f != float64(int(f)) {
				return nil, fmt.Errorf("%s: expected an integer, got %s: %w", k, v, errdefs.ErrInvalidArgument)
			}
			i = int(f)
		}
		return &i, nil
	}
	boolean := func(k string) (*bool, error) {
		v, ok := raw[k]
		if !ok || string(v) == "null" {
			return nil, nil
		}
		var b bool
		if json.Unmarshal(v, &b) == nil {
			return &b, nil
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			switch strings.ToLower(s) {
			case "true", "1", "yes", "on", "t", "y":
				b = true
				return &b, nil
			case "false", "0", "no", "off", "f", "n":
				return &b, nil
			}
		}
		var n float64
		if json.Unmarshal(v, &n) == nil && (n == 0 || n == 1) {
			b = n == 1
			return &b, nil
		}
		return nil, fmt.Errorf("%s: expected a boolean, got %s: %w", k, v, errdefs.ErrInvalidArgument)
	}
	list := func(k string) ([]string, error) {
		v, ok := raw[k]
		if !ok || string(v) == "null" {
			return nil, nil
		}
		var l []string
		if e := json.Unmarshal(v, &l); e != nil {
			return nil, fmt.Errorf("%s: expected a list of strings, got %s: %w", k, v, errdefs.ErrInvalidArgument)
		}
		if l == nil {
			l = []string{}
		}
		return l, nil
	}
	if req.OutputDir, err = str("output_dir"); err != nil {
		return req, err
	}
	if req.StartStep, err = num("start_step"); err != nil {
		return req, err
	}
	if req.NumSteps, err = num("num_steps"); err != nil {
		return req, err
	}
	if req.Activities, err = list("activities"); err != nil {
		return req, err
	}
	if req.WithStack, err = boolean("with_stack"); err != nil {
		return req, err
	}
	if req.RecordShapes, err = boolean("record_shapes"); err != nil {
		return req, err
	}
	var b *bool
	if b, err = boolean("profile_by_stage"); err != nil {
		return req, err
	}
	req.ProfileByStage = b != nil && *b
	if b, err = boolean("merge_profiles"); err != nil {
		return req, err
	}
	req.MergeProfiles = b != nil && *b
	if req.ProfilePrefix, err = str("profile_prefix"); err != nil {
		return req, err
	}
	if req.ProfileStages, err = list("profile_stages"); err != nil {
		return req, err
	}
	return req, nil
}

// profiler is one replica's torch-profiler state (SchedulerProfilerMixin).
type profiler struct {
	inProgress    bool
	torch         bool // CPU or GPU activity: a Kineto trace is being recorded
	outputDir     string
	id            string
	prefix        string
	activities    []string
	withStack     bool
	recordShapes  bool
	merge         bool
	startCt       int // 0: none
	targetCt      int // 0: none
	byStage       bool
	byStageNoNum  bool
	targetPrefill int
	targetDecode  int
	prefillCt     int
	decodeCt      int
	stage         Stage
	v2            bool // SGLANG_PROFILE_V2: lower-case stage names, no DP/PP/EP in file names
	startedAt     time.Time
	steps         []stepRecord
}

func (p *profiler) init() { *p = profiler{} }

// stageName is the stage as it appears in logs and file names: EXTEND/DECODE,
// or prefill/decode with the V2 profiler.
func (p *profiler) stageName(st Stage) string {
	if !p.v2 {
		return string(st)
	}
	if st == StageExtend {
		return "prefill"
	}
	return strings.ToLower(string(st))
}

func (p *profiler) capturing() bool { return p.inProgress && p.torch }

const (
	msgAlreadyInProgress = "Profiling is already in progress. Call /stop_profile first."
	msgNotInProgress     = "Profiling is not in progress. Call /start_profile first."
)

// profileStart handles a START_PROFILE request on the scheduler loop.
func (e *engine) profileStart(ctx context.Context, req ProfileRequest) (bool, string, error) {
	p := &e.prof
	if p.inProgress {
		return false, msgAlreadyInProgress, nil
	}
	env := e.srv.cfg.Env
	p.v2 = envBool(env, "SGLANG_PROFILE_V2", false)
	if p.v2 && !(req.ProfileByStage && req.NumSteps != nil && *req.NumSteps > 0) {
		// The V2 profiler only implements by-stage captures with num_steps.
		return false, "", e.crash("NotImplementedError: SGLANG_PROFILE_V2 only supports profile_by_stage with num_steps")
	}
	p.byStage = req.ProfileByStage
	p.byStageNoNum = false
	dir := ""
	if req.OutputDir != nil {
		dir = *req.OutputDir
	}
	if dir == "" {
		dir = env["SGLANG_TORCH_PROFILER_DIR"]
	}
	if dir == "" {
		dir = "/tmp"
	}
	p.outputDir = expandHome(dir, env)
	p.activities = []string{"CPU", "GPU"}
	if req.Activities != nil {
		p.activities = nil
		for _, a := range req.Activities {
			if knownActivities[a] {
				p.activities = append(p.activities, a)
			}
		}
	}
	p.withStack = envBool(env, "SGLANG_PROFILE_WITH_STACK", true)
	if req.WithStack != nil && !*req.WithStack {
		p.withStack = false
	}
	p.recordShapes = envBool(env, "SGLANG_PROFILE_RECORD_SHAPES", true)
	if req.RecordShapes != nil && !*req.RecordShapes {
		p.recordShapes = false
	}
	p.id = req.profileID
	p.prefix = ""
	if req.ProfilePrefix != nil {
		p.prefix = *req.ProfilePrefix
	}
	p.merge = req.MergeProfiles
	p.startCt, p.targetCt = 0, 0
	if req.StartStep != nil && *req.StartStep != 0 {
		p.startCt = max(*req.StartStep, e.forwardCt+1)
	}
	if req.NumSteps != nil && *req.NumSteps != 0 {
		n := *req.NumSteps
		switch {
		case p.byStage:
			p.targetPrefill, p.targetDecode = n, n
			p.prefillCt, p.decodeCt = 0, 0
		case p.startCt != 0:
			p.targetCt = p.startCt + n
		default:
			p.targetCt = e.forwardCt + n
		}
	} else if p.byStage {
		// SGLang compares the counter with None on the next prefill and the
		// scheduler dies with a TypeError ([inferred] in the notes).
		p.byStageNoNum = true
		p.prefillCt, p.decodeCt = 0, 0
	}
	if p.byStage || p.startCt != 0 {
		return true, "Succeeded", nil
	}
	return e.startTorch(StageNone)
}

// startTorch begins recording on every rank of the replica.
func (e *engine) startTorch(stage Stage) (bool, string, error) {
	p := &e.prof
	forStage := ""
	if stage != StageNone {
		forStage = " for " + p.stageName(stage)
	}
	e.logAll("Profiling starts%s. Traces will be saved to: %s (with profile id: %s)", forStage, p.outputDir, p.id)
	p.stage = stage
	p.torch = false
	p.steps = nil
	p.startedAt = time.Now()
	for _, a := range p.activities {
		switch a {
		case "CPU", "GPU", "RPD":
			p.torch = true
			p.inProgress = true
		case "MEM", "CUDA_PROFILER":
			p.inProgress = true
		}
	}
	return true, "Succeeded", nil
}

// profilePredicate is _profile_batch_predicate: it runs before each batch
// with the forward counter already advanced.
func (e *engine) profilePredicate(ctx context.Context, mode Stage) error {
	p := &e.prof
	if p.byStage {
		if p.byStageNoNum && (mode == StageExtend || mode == StageDecode) {
			if (mode == StageExtend && p.prefillCt == 0) || (mode == StageDecode && p.decodeCt == 0) {
				if _, _, err := e.startTorch(mode); err != nil {
					return err
				}
			}
			return e.crash("TypeError: '>' not supported between instances of 'int' and 'NoneType'")
		}
		switch mode {
		case StageExtend:
			if p.prefillCt == 0 {
				if _, _, err := e.startTorch(StageExtend); err != nil {
					return err
				}
			}
			p.prefillCt++
			if p.prefillCt > p.targetPrefill && p.inProgress && p.stage == StageExtend {
				if err := e.stopInBatch(ctx, StageExtend); err != nil {
					return err
				}
			}
		case StageDecode:
			if p.decodeCt == 0 {
				if p.inProgress {
					if err := e.stopInBatch(ctx, StageExtend); err != nil {
						return err
					}
				}
				if _, _, err := e.startTorch(StageDecode); err != nil {
					return err
				}
			}
			p.decodeCt++
			if p.decodeCt > p.targetDecode && p.inProgress && p.stage == StageDecode {
				if err := e.stopInBatch(ctx, StageDecode); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if p.targetCt != 0 && p.targetCt <= e.forwardCt {
		if err := e.stopInBatch(ctx, StageNone); err != nil {
			return err
		}
	}
	if p.startCt != 0 && p.startCt == e.forwardCt {
		if _, _, err := e.startTorch(StageNone); err != nil {
			return err
		}
	}
	return nil
}

// profileStop stops recording, exports one trace per rank (PP0 ranks before
// answering, later PP stages in the background as their own processes
// would), dumps memory snapshots, merges on the first rank if asked and logs
// the result. It blocks the scheduler loop for the whole export.
func (e *engine) profileStop(ctx context.Context, stage Stage) (bool, string, error) {
	p := &e.prof
	if !p.inProgress {
		return false, msgNotInProgress, nil
	}
	if stage == StageNone {
		stage = p.stage
	}
	if err := os.MkdirAll(p.outputDir, 0o755); err != nil {
		e.logRank0("Failed to create output directory %s: %v", p.outputDir, err)
	}
	suffix := ""
	if stage != StageNone {
		suffix = "-" + p.stageName(stage)
	}
	e.logAll("Stop profiling%s...", suffix)
	stoppedAt := time.Now()
	snap := exportJob{
		id: p.id, prefix: p.prefix, dir: p.outputDir, stage: stage, v2: p.v2,
		withStack: p.withStack, recordShapes: p.recordShapes,
		start: p.startedAt, stop: stoppedAt, steps: p.steps,
	}
	if p.torch {
		var wg sync.WaitGroup
		errs := make([]error, len(e.ranks))
		for i, r := range e.ranks {
			if r.PP != 0 {
				e.srv.background.Add(1)
				go func() {
					defer e.srv.background.Done()
					if err := e.srv.exportRank(ctx, snap, r); err != nil {
						e.srv.log.printf(rankPrefix(&e.srv.cfg.Args, r), "Failed to export trace: %v", err)
					}
				}()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = e.srv.exportRank(ctx, snap, r)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return false, "", ctx.Err()
		}
		for i, err := range errs {
			if err != nil {
				e.srv.log.printf(rankPrefix(&e.srv.cfg.Args, e.ranks[i]), "Failed to export trace: %v", err)
			}
		}
		if has(p.activities, "RPD") {
			e.srv.writeRPD(ctx, snap, e.ranks[0])
		}
	}
	if has(p.activities, "MEM") {
		for _, r := range e.ranks {
			name := fmt.Sprintf("%s-TP-%d-memory%s.pickle", profileIDNow(time.Now().UnixNano()), r.TP, suffix)
			writeFileAtomic(filepath.Join(p.outputDir, name), memorySnapshotPickle)
		}
	}
	mergeNote := ""
	if p.merge && p.torch && e.dp == 0 {
		mergeNote = e.srv.mergeProfiles(ctx, e.ranks[0], p.outputDir, p.id)
	}
	for i, r := range e.ranks {
		note := ""
		if i == 0 {
			note = mergeNote
		}
		e.srv.log.printf(rankPrefix(&e.srv.cfg.Args, r), "Profiling done. Traces are saved to: %s%s", p.outputDir, note)
	}
	p.inProgress = false
	p.torch = false
	p.startCt = 0
	p.targetCt = 0
	p.steps = nil
	return true, "Succeeded.", nil
}

// stopInBatch is an automatic stop inside a batch (num_steps reached, or a
// by-stage switch): the export stalls the batch, which the watchdog sees.
func (e *engine) stopInBatch(ctx context.Context, stage Stage) error {
	t0 := time.Now()
	if _, _, err := e.profileStop(ctx, stage); err != nil {
		return err
	}
	return e.watchdog(time.Since(t0))
}

// watchdog reproduces SGLang's scheduler watchdog: a batch that makes no
// progress for --watchdog-timeout seconds (here: an auto-stop export or
// merge running inside the batch) kills the server.
func (e *engine) watchdog(stalled time.Duration) error {
	limit := time.Duration(e.srv.cfg.Args.WatchdogTimeout * float64(time.Second))
	if limit <= 0 || stalled <= limit {
		return nil
	}
	e.srv.log.printf(rankPrefix(&e.srv.cfg.Args, e.ranks[0]), "Scheduler watchdog timeout (self.watchdog_timeout=%g, self.soft=False)", e.srv.cfg.Args.WatchdogTimeout)
	return &crashError{msg: fmt.Sprintf("watchdog timeout after %v", stalled.Round(time.Millisecond))}
}

// memorySnapshotPickle is an empty dict in pickle protocol 4, a stand-in for
// torch.cuda.memory._dump_snapshot output.
var memorySnapshotPickle = []byte{0x80, 0x04, 0x7d, 0x94, 0x2e}

func has(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func expandHome(p string, env map[string]string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home := env["HOME"]
		if home == "" {
			home = "/root"
		}
		return filepath.Join(home, strings.TrimPrefix(p, "~"))
	}
	return p
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
