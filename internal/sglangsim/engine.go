package sglangsim

import (
	"context"
	"fmt"

	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
)

// request is one generation request inside a scheduler.
type request struct {
	rid          string
	promptTokens int
	maxNew       int
	generated    int
	health       bool
	arrival      time.Time
	firstToken   time.Time
	canceled     atomic.Bool
	// out receives one tokenEvent per generated token; it is closed when the
	// request finishes or is dropped.
	out chan tokenEvent
}

type tokenEvent struct {
	index  int // 0-based position of the generated token
	finish bool
}

// stepRecord is one batch ("forward") as the profiler saw it.
type stepRecord struct {
	ct         int
	mode       Stage
	bs, toks   int
	start, end time.Time
	graph      bool
}

// engine is one data-parallel replica: a scheduler event loop shared by its
// TP x PP ranks, which all run the same batches.
type engine struct {
	srv   *Server
	dp    int
	ranks []Rank // PP-major, TP-minor

	mu      sync.Mutex
	queue   []*request
	ctrl    []ctrlMsg
	wake    chan struct{}
	running []*request

	forwardCt         int // touched only by the loop goroutine
	forwardCtSnapshot atomic.Int64
	prof              profiler

	numRunning atomic.Int64
	numQueued  atomic.Int64
}

type ctrlMsg struct {
	kind  string // "start", "stop", "flush"
	start ProfileRequest
	reply chan ctrlReply
}

type ctrlReply struct {
	ok  bool
	msg string
}

func newEngine(s *Server, dp int) *engine {
	e := &engine{srv: s, dp: dp, wake: make(chan struct{}, 1)}
	a := &s.cfg.Args
	for pp := 0; pp < a.PPSize; pp++ {
		for tp := 0; tp < a.TPSize; tp++ {
			// SGLang: moe_ep_rank = tp_rank // (tp_size // ep_size).
			e.ranks = append(e.ranks, Rank{TP: tp, DP: dp, PP: pp, EP: tp * a.EPSize / a.TPSize})
		}
	}
	e.prof.init()
	return e
}

func (e *engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// submit queues a request for the next prefill batch.
func (e *engine) submit(r *request) {
	e.mu.Lock()
	e.queue = append(e.queue, r)
	e.numQueued.Store(int64(len(e.queue)))
	e.mu.Unlock()
	e.signal()
}

// control sends a profiler or cache command to the scheduler loop and waits
// for its answer, as the tokenizer manager does over ZMQ.
func (e *engine) control(ctx context.Context, m ctrlMsg) (ctrlReply, error) {
	m.reply = make(chan ctrlReply, 1)
	e.mu.Lock()
	e.ctrl = append(e.ctrl, m)
	e.mu.Unlock()
	e.signal()
	select {
	case r := <-m.reply:
		return r, nil
	case <-ctx.Done():
		return ctrlReply{}, ctx.Err()
	case <-e.srv.ctx.Done():
		return ctrlReply{}, fmt.Errorf("sglang server stopped: %w", errdefs.ErrUnavailable)
	}
}

// loop is the scheduler event loop: receive requests, handle control
// messages, run one batch. Returns when ctx ends or the scheduler crashes.
func (e *engine) loop(ctx context.Context) error {
	for {
		e.mu.Lock()
		ctrl := e.ctrl
		e.ctrl = nil
		e.mu.Unlock()
		for _, m := range ctrl {
			if err := e.handleCtrl(ctx, m); err != nil {
				return err
			}
		}
		e.mu.Lock()
		var fresh []*request
		for _, r := range e.queue {
			if r.canceled.Load() {
				close(r.out)
				continue
			}
			fresh = append(fresh, r)
		}
		e.queue = nil
		e.numQueued.Store(0)
		e.mu.Unlock()

		var live []*request
		for _, r := range e.running {
			if r.canceled.Load() {
				close(r.out)
				continue
			}
			live = append(live, r)
		}
		e.running = live
		e.numRunning.Store(int64(len(e.running)))

		if len(fresh) == 0 && len(e.running) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-e.wake:
				continue
			}
		}
		if err := e.runBatch(ctx, fresh); err != nil {
			return err
		}
	}
}

func (e *engine) handleCtrl(ctx context.Context, m ctrlMsg) error {
	switch m.kind {
	case "start", "stop":
		var ok bool
		var msg string
		var err error
		if m.kind == "start" {
			ok, msg, err = e.profileStart(ctx, m.start)
		} else {
			ok, msg, err = e.profileStop(ctx, StageNone)
		}
		if err != nil {
			// The scheduler died (or is shutting down): no reply ever comes.
			return err
		}
		m.reply <- ctrlReply{ok: ok, msg: msg}
	case "flush":
		e.mu.Lock()
		q := len(e.queue)
		e.mu.Unlock()
		if q > 0 || len(e.running) > 0 {
			e.logRank0("Cache not flushed because there are pending requests. #queue-req: %d, #running-req: %d", q, len(e.running))
			m.reply <- ctrlReply{ok: false}
			return nil
		}
		e.logRank0("Cache flushed successfully!")
		m.reply <- ctrlReply{ok: true}
	}
	return nil
}

// runBatch forms and runs one batch: a prefill (EXTEND) batch of the new
// requests when there are any, otherwise a decode batch of the running ones.
func (e *engine) runBatch(ctx context.Context, fresh []*request) error {
	o := &e.srv.opts
	rec := stepRecord{mode: StageDecode, graph: !e.srv.cfg.Args.DisableCUDAGraph}
	var batch []*request
	if len(fresh) > 0 {
		batch = fresh
		rec.mode = StageExtend
		rec.graph = false
		for _, r := range fresh {
			rec.toks += r.promptTokens
		}
	} else {
		batch = e.running
		rec.toks = len(batch)
	}
	rec.bs = len(batch)

	e.forwardCt++
	e.forwardCtSnapshot.Store(int64(e.forwardCt))
	rec.ct = e.forwardCt
	if o.CrashAtStep > 0 && e.forwardCt == o.CrashAtStep {
		return e.crash(fmt.Sprintf("RuntimeError: CUDA error: an illegal memory access was encountered (simulated crash at forward step %d)", e.forwardCt))
	}
	if err := e.profilePredicate(ctx, rec.mode); err != nil {
		return err
	}

	dur := o.DecodeStepTime
	if rec.mode == StageExtend {
		dur += time.Duration(rec.toks) * o.PrefillTokenTime
	}
	rec.start = time.Now()
	t := time.NewTimer(dur)
	select {
	case <-ctx.Done():
		t.Stop()
		return nil
	case <-t.C:
	}
	rec.end = time.Now()
	if e.prof.capturing() {
		e.prof.steps = append(e.prof.steps, rec)
	}

	now := rec.end
	var keep []*request
	if rec.mode == StageExtend {
		keep = append(keep, e.running...)
		e.logBatchPrefill(batch, len(e.running))
	}
	for _, r := range batch {
		if r.generated == 0 {
			r.firstToken = now
		}
		r.generated++
		done := r.generated >= r.maxNew
		if !r.canceled.Load() {
			r.out <- tokenEvent{index: r.generated - 1, finish: done}
		}
		if done {
			close(r.out)
			e.srv.metrics.finished(r, now)
			continue
		}
		keep = append(keep, r)
	}
	e.running = keep
	e.numRunning.Store(int64(len(keep)))
	e.srv.lastOutput.Store(now.UnixNano())
	e.srv.metrics.step(rec)
	if rec.mode == StageDecode && e.forwardCt%40 == 0 {
		e.logRank0("Decode batch. #running-req: %d, #token: %d, token usage: 0.00, cuda graph: %s, gen throughput (token/s): %.2f, #queue-req: %d, ",
			len(batch), len(batch)*64, pyBool(rec.graph), float64(len(batch))/dur.Seconds(), e.numQueued.Load())
	}
	return nil
}

func (e *engine) logBatchPrefill(batch []*request, running int) {
	toks := 0
	for _, r := range batch {
		toks += r.promptTokens
	}
	e.logRank0("Prefill batch. #new-seq: %d, #new-token: %d, #cached-token: 0, token usage: 0.00, #running-req: %d, #queue-req: %d, ",
		len(batch), toks, running, e.numQueued.Load())
}

// logRank0 logs as the replica's first TP rank, which is where SGLang's
// scheduler prints batch statistics.
func (e *engine) logRank0(format string, args ...any) {
	e.srv.log.printf(rankPrefix(&e.srv.cfg.Args, e.ranks[0]), format, args...)
}

// logAll logs the same line from every rank of the replica.
func (e *engine) logAll(format string, args ...any) {
	for _, r := range e.ranks {
		e.srv.log.printf(rankPrefix(&e.srv.cfg.Args, r), format, args...)
	}
}

// Traceback frames of the scheduler's two failure points: a batch in the
// event loop, and model loading in Scheduler.__init__.
const (
	batchFrames = "  File \"/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py\", line 2931, in run_scheduler_process\n" +
		"    scheduler.event_loop_overlap()\n" +
		"  File \"/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py\", line 1098, in event_loop_overlap\n" +
		"    batch_result = self.run_batch(batch)\n"
	loadFrames = "  File \"/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py\", line 2912, in run_scheduler_process\n" +
		"    scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, dp_rank)\n" +
		"  File \"/sgl-workspace/sglang/python/sglang/srt/model_executor/model_runner.py\", line 812, in load_model\n" +
		"    self.model = get_model(model_config=self.model_config, load_config=self.load_config, device_config=DeviceConfig(self.device))\n"
)

// crash reproduces a scheduler exception in a batch: the traceback is
// logged with the rank prefix and the whole server goes down.
func (e *engine) crash(last string) error { return e.crashIn(batchFrames, last) }

// crashIn logs a scheduler traceback made of frames and the exception line
// last, as run_scheduler_process does before it SIGQUITs the launcher.
func (e *engine) crashIn(frames, last string) error {
	tb := "Scheduler hit an exception: Traceback (most recent call last):\n" + frames + last
	e.srv.log.printf(rankPrefix(&e.srv.cfg.Args, e.ranks[0]), "%s", tb)
	return &crashError{msg: last}
}

// crashError reports that the simulated scheduler died.
type crashError struct{ msg string }

func (c *crashError) Error() string { return "sglang scheduler crashed: " + c.msg }
