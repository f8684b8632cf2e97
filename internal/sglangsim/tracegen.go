package sglangsim

import (
	"fmt"
	"math"
	"time"
)

// Event categories as Kineto names them.
type evCat uint8

const (
	catCPUOp evCat = iota
	catUserAnn
	catGPUUserAnn
	catPython
	catRuntime
	catDriver
	catKernel
	catMemcpy
	catMemset
	catOverhead
	catFlowS
	catFlowF
)

var catNames = [...]string{"cpu_op", "user_annotation", "gpu_user_annotation", "python_function", "cuda_runtime", "cuda_driver", "kernel", "gpu_memcpy", "gpu_memset", "overhead", "ac2g", "ac2g"}

// ev is one Kineto event in compact form; the writer renders the args each
// category carries.
type ev struct {
	cat      evCat
	name     string
	pid, tid int
	ts, dur  int64 // ns relative to baseTimeNanoseconds
	ext      int64 // External id; 0 = none
	corr     uint64
	cbid     int
	evIdx    int
	pyID     int64
	pyParent int64 // 0 = null
	k        *kernelSpec
	grid     [3]int
	bytes    int64
	shapes   string // pre-rendered record_shapes args, without braces
	coll     *collArgs
}

type collArgs struct {
	name   string
	nelems int64
	group  int
	ranks  string
}

// traceSpec is everything one rank's trace depends on; writeTrace is a pure
// function of it, so traces are deterministic given the seed and the steps.
type traceSpec struct {
	rank        Rank
	globalRank  int
	tpSize      int
	ppSize      int
	worldSize   int
	groupRank   int
	device      int
	nodeGPUs    int
	pid         int
	layers      int
	firstStage  bool
	lastStage   bool
	seed        int64
	withStack   bool
	recordShape bool
	start, stop time.Time
	steps       []stepRecord
	traceName   string
	ncclVersion string
}

// Qwen3-8B dimensions, used for shapes and message sizes.
const (
	hiddenSize   = 4096
	interSize    = 12288
	numQHeads    = 32
	numKVHeads   = 8
	headDim      = 128
	vocabSize    = 151936
	cudaStreamID = 7
)

func (s *Server) traceSpec(job exportJob, r Rank) traceSpec {
	a := &s.cfg.Args
	o := &s.opts
	group := r.PP*a.TPSize + r.TP
	nodeGPUs := o.NodeGPUs
	if nodeGPUs <= 0 {
		nodeGPUs = max(8, a.TPSize*a.PPSize*a.DPSize)
	}
	per := o.Layers / a.PPSize
	extra := o.Layers % a.PPSize
	layers := per
	if r.PP < extra {
		layers++
	}
	return traceSpec{
		rank:        r,
		globalRank:  s.globalRank(r),
		tpSize:      a.TPSize,
		ppSize:      a.PPSize,
		worldSize:   a.TPSize * a.PPSize,
		groupRank:   group,
		device:      (a.BaseGPUID + r.DP*a.TPSize*a.PPSize + group) % nodeGPUs,
		nodeGPUs:    nodeGPUs,
		pid:         o.PID + 7*s.globalRank(r),
		layers:      max(1, layers),
		firstStage:  r.PP == 0,
		lastStage:   r.PP == a.PPSize-1,
		seed:        o.Seed,
		withStack:   job.withStack,
		recordShape: job.recordShapes,
		start:       job.start,
		stop:        job.stop,
		steps:       job.steps,
		ncclVersion: "2.28.9",
	}
}

// kinetoBasePeriod is the period (in seconds) baseTimeNanoseconds is
// floored to, so that processes started in the same period share a base.
const kinetoBasePeriod = 7889238

func baseTimeNS(t time.Time) int64 {
	p := int64(kinetoBasePeriod) * int64(time.Second)
	return t.UnixNano() / p * p
}

// mix is splitmix64; the generator derives every random choice from a hash
// of (seed, rank or step, index) so that ranks agree on shared quantities
// (all-reduce arrival skew) without shared state.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func unit(keys ...uint64) float64 {
	h := uint64(0x51ed2701)
	for _, k := range keys {
		h = mix(h ^ k)
	}
	return float64(h>>11) / float64(1<<53)
}

// gen accumulates one rank's events in Kineto's output order: CPU ops and
// annotations, Python functions, device activities with their runtime calls
// and flows, GPU annotations.
type gen struct {
	sp      *traceSpec
	base    int64
	ext     int64
	corr    uint64
	pyID    int64
	cpu     []ev
	py      []ev
	act     []ev
	gpuAnn  []ev
	kernels int
	stepIdx uint64
	opIdx   uint64
	loopPy  int64
}

func (g *gen) rel(t time.Time) int64 {
	d := t.UnixNano() - g.base
	if d < 0 {
		return 0
	}
	return d
}

func (g *gen) jitter(lo, hi float64) float64 {
	g.opIdx++
	return lo + (hi-lo)*unit(uint64(g.sp.seed), uint64(g.sp.globalRank), g.stepIdx, g.opIdx)
}

func (g *gen) nextExt() int64   { g.ext++; return g.ext }
func (g *gen) nextCorr() uint64 { g.corr++; return g.corr }

func (g *gen) cpuEv(cat evCat, name string, ts, dur int64, shapes string) int {
	g.cpu = append(g.cpu, ev{cat: cat, name: name, pid: g.sp.pid, tid: g.sp.pid, ts: ts, dur: dur, ext: g.nextExt(), shapes: shapes})
	return len(g.cpu) - 1
}

func (g *gen) pyEv(name string, ts, dur int64, parent int64) int64 {
	if !g.sp.withStack {
		return 0
	}
	g.pyID++
	g.py = append(g.py, ev{cat: catPython, name: name, pid: g.sp.pid, tid: g.sp.pid, ts: ts, dur: max(dur, 1), pyID: g.pyID, pyParent: parent})
	return g.pyID
}

// launch records a runtime (or driver) API call with its ac2g start flow.
func (g *gen) launch(name string, cbid int, driver bool, ts, dur int64, ext int64, corr uint64, flow bool) {
	cat := catRuntime
	if driver {
		cat = catDriver
	}
	g.act = append(g.act, ev{cat: cat, name: name, pid: g.sp.pid, tid: g.sp.pid, ts: ts, dur: dur, ext: ext, corr: corr, cbid: cbid})
	if flow {
		g.act = append(g.act, ev{cat: catFlowS, pid: g.sp.pid, tid: g.sp.pid, ts: ts, corr: corr})
	} else {
		// Kineto links every other runtime call with a correlation to itself:
		// an 'f' on the CPU thread with no matching 's'.
		g.act = append(g.act, ev{cat: catFlowF, pid: g.sp.pid, tid: g.sp.pid, ts: ts, corr: corr})
	}
}

func (g *gen) device(cat evCat, name string, k *kernelSpec, ts, dur int64, ext int64, corr uint64, grid [3]int, bytes int64, coll *collArgs) {
	g.act = append(g.act, ev{cat: cat, name: name, pid: g.sp.device, tid: cudaStreamID, ts: ts, dur: dur, ext: ext, corr: corr, k: k, grid: grid, bytes: bytes, coll: coll})
	g.act = append(g.act, ev{cat: catFlowF, pid: g.sp.device, tid: cudaStreamID, ts: ts, corr: corr})
	if cat == catKernel {
		g.kernels++
	}
}

// layerOp is one launch of a decoder layer or of the model head/tail.
type layerOp struct {
	cpu     []string // cpu_op chain, outermost first; the launch sits in the innermost
	k       *kernelSpec
	wExtend float64
	wDecode float64
	comm    string // "allreduce", "send", "recv" or ""
	shapes  func(bs, toks int) string
}

func gemmShapes(out, in int) func(int, int) string {
	return func(_, toks int) string {
		return fmt.Sprintf(`"Input Dims": [[%d, %d], [%d, %d], []], "Input type": ["c10::BFloat16", "c10::BFloat16", ""]`, toks, in, out, in)
	}
}

func (g *gen) layerOps(decode bool) []layerOp {
	tp := g.sp.tpSize
	gemm := kGemmLarge
	if decode {
		gemm = kGemmSmall
	}
	qkv := (numQHeads + 2*numKVHeads) * headDim / tp
	ops := []layerOp{
		{cpu: []string{"sgl_kernel::fused_add_rmsnorm"}, k: kFusedAddRMSNorm, wExtend: 2, wDecode: 1.5},
		{cpu: []string{"aten::linear", "aten::matmul", "aten::mm"}, k: gemm, wExtend: 9, wDecode: 5, shapes: gemmShapes(qkv, hiddenSize)},
		{cpu: []string{"sgl_kernel::rmsnorm"}, k: kRMSNorm, wExtend: 0.8, wDecode: 0.8},
		{cpu: []string{"sgl_kernel::rmsnorm"}, k: kRMSNorm, wExtend: 0.6, wDecode: 0.6},
		{cpu: []string{"sgl_kernel::apply_rope_pos_ids_cos_sin_cache"}, k: kRope, wExtend: 1.2, wDecode: 1},
		{cpu: []string{"aten::index_put_", "aten::_index_put_impl_"}, k: kStoreKV, wExtend: 1.5, wDecode: 1},
		{cpu: []string{"sgl_kernel::fwd"}, k: kPrepareVarlen, wExtend: 0.3, wDecode: 0.4},
		{cpu: []string{"sgl_kernel::fwd"}, k: kFlashAttn, wExtend: 14, wDecode: 6},
		{cpu: []string{"aten::linear", "aten::matmul", "aten::mm"}, k: gemm, wExtend: 7, wDecode: 4, shapes: gemmShapes(hiddenSize, numQHeads*headDim/tp)},
	}
	if tp > 1 {
		ops = append(ops, layerOp{cpu: []string{"record_param_comms"}, k: kAllReduce, wExtend: 5, wDecode: 3, comm: "allreduce"})
	}
	ops = append(ops,
		layerOp{cpu: []string{"sgl_kernel::fused_add_rmsnorm"}, k: kFusedAddRMSNorm, wExtend: 2, wDecode: 1.5},
		layerOp{cpu: []string{"aten::linear", "aten::matmul", "aten::mm"}, k: gemm, wExtend: 20, wDecode: 9, shapes: gemmShapes(2*interSize/tp, hiddenSize)},
		layerOp{cpu: []string{"sgl_kernel::silu_and_mul"}, k: kSiluAndMul, wExtend: 3, wDecode: 1.5},
	)
	if decode {
		ops = append(ops,
			layerOp{cpu: []string{"aten::linear", "aten::matmul", "aten::mm"}, k: kGemmSplitK, wExtend: 10, wDecode: 6, shapes: gemmShapes(hiddenSize, interSize/tp)},
			layerOp{cpu: []string{"aten::linear", "aten::matmul", "aten::mm"}, k: kSplitKReduce, wExtend: 1, wDecode: 1})
	} else {
		ops = append(ops, layerOp{cpu: []string{"aten::linear", "aten::matmul", "aten::mm"}, k: gemm, wExtend: 10, wDecode: 6, shapes: gemmShapes(hiddenSize, interSize/tp)})
	}
	if tp > 1 {
		ops = append(ops, layerOp{cpu: []string{"record_param_comms"}, k: kAllReduce, wExtend: 5, wDecode: 3, comm: "allreduce"})
	}
	return ops
}

// forwardOps lists every launch of one forward pass on this PP stage.
func (g *gen) forwardOps(decode bool) []layerOp {
	var ops []layerOp
	if g.sp.firstStage {
		ops = append(ops, layerOp{cpu: []string{"aten::embedding", "aten::index_select"}, k: kEmbedding, wExtend: 1, wDecode: 0.5})
	} else {
		ops = append(ops, layerOp{cpu: []string{"record_param_comms"}, k: kSendRecv, wExtend: 3, wDecode: 1, comm: "recv"})
	}
	lo := g.layerOps(decode)
	for range g.sp.layers {
		ops = append(ops, lo...)
	}
	if g.sp.lastStage {
		ops = append(ops,
			layerOp{cpu: []string{"sgl_kernel::fused_add_rmsnorm"}, k: kFusedAddRMSNorm, wExtend: 2, wDecode: 1.5},
			layerOp{cpu: []string{"aten::linear", "aten::matmul", "aten::mm"}, k: kLMHead, wExtend: 12, wDecode: 8, shapes: gemmShapes(vocabSize/g.sp.tpSize, hiddenSize)})
		if g.sp.tpSize > 1 {
			ops = append(ops, layerOp{cpu: []string{"record_param_comms"}, k: kAllReduce, wExtend: 3, wDecode: 2, comm: "allgather"})
		}
	} else {
		ops = append(ops, layerOp{cpu: []string{"record_param_comms"}, k: kSendRecv, wExtend: 3, wDecode: 1, comm: "send"})
	}
	return ops
}

const us = int64(time.Microsecond)

// step emits one batch. Eager batches (EXTEND, or DECODE with
// --disable-cuda-graph) launch every kernel from a CPU op; graph batches
// replay one cudaGraphLaunch whose correlation covers all kernels.
func (g *gen) step(st stepRecord) {
	g.stepIdx = uint64(st.ct)
	g.opIdx = 0
	S, E := g.rel(st.start), g.rel(st.end)
	D := max(E-S, 200*us)
	decode := st.mode == StageDecode
	label := fmt.Sprintf("step[%s bs=%d toks=%d]", st.mode, st.bs, st.toks)
	if decode {
		label = fmt.Sprintf("step[DECODE bs=%d]", st.bs)
	}
	ops := g.forwardOps(decode)
	totalW := 0.0
	for _, op := range ops {
		if decode {
			totalW += op.wDecode
		} else {
			totalW += op.wExtend
		}
	}
	gpuBudget := float64(D) * 0.78

	pyRun := g.pyEv("/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py(2245): run_batch", S+5*us, D-10*us, g.loopPy)
	pyTP := g.pyEv("/sgl-workspace/sglang/python/sglang/srt/managers/tp_worker.py(390): forward_batch_generation", S+8*us, D-16*us, pyRun)
	pyFwd := g.pyEv("/sgl-workspace/sglang/python/sglang/srt/model_executor/model_runner.py(2169): forward", S+12*us, D-30*us, pyTP)

	annIdx := g.cpuEv(catUserAnn, label, S+15*us, 0, "")
	annExt := g.cpu[annIdx].ext
	cpuT := S + 25*us
	gpuT := cpuT
	firstGPU := int64(-1)
	bs, toks := st.bs, st.toks
	if decode {
		toks = bs
	}

	if st.graph && decode {
		// Copy the batch into the graph's static input buffers, then replay.
		for i := range 3 {
			ext := g.nextExt()
			g.cpu = append(g.cpu, ev{cat: catCPUOp, name: "aten::copy_", pid: g.sp.pid, tid: g.sp.pid, ts: cpuT, dur: 9 * us, ext: ext})
			corr := g.nextCorr()
			g.launch("cudaMemcpyAsync", 41, false, cpuT+2*us, 5*us, ext, corr, true)
			ms := max(cpuT+9*us, gpuT+us)
			g.device(catMemcpy, "Memcpy HtoD (Pinned -> Device)", nil, ms, 1500, ext, corr, [3]int{}, int64(bs*8*(i+1)), nil)
			gpuT = ms + 1500
			if firstGPU < 0 {
				firstGPU = ms
			}
			cpuT += 12 * us
		}
		ext := g.nextExt()
		g.cpu = append(g.cpu, ev{cat: catCPUOp, name: "aten::fill_", pid: g.sp.pid, tid: g.sp.pid, ts: cpuT, dur: 9 * us, ext: ext})
		fc := g.nextCorr()
		g.launch("cudaLaunchKernel", 211, false, cpuT+2*us, 5*us, ext, fc, true)
		ft := max(cpuT+9*us, gpuT+us)
		g.device(catKernel, kFill.name, kFill, ft, 1100, ext, fc, g.grid(kFill, bs, toks), 0, nil)
		gpuT = ft + 1100
		cpuT += 12 * us
		launchDur := 10*us + int64(len(ops))*300
		end := cpuT + 4*us + launchDur + 3*us
		pyReplay := g.pyEv("/sgl-workspace/sglang/python/sglang/srt/model_executor/cuda_graph_runner.py(850): replay", cpuT, end+us-cpuT, pyFwd)
		g.pyEv("torch/cuda/graphs.py(137): replay", cpuT+2*us, end-(cpuT+2*us), pyReplay)
		corr := g.nextCorr()
		g.launch("cudaGraphLaunch", 311, false, cpuT+4*us, launchDur, 0, corr, true)
		kt := max(cpuT+12*us, gpuT+us)
		if firstGPU < 0 {
			firstGPU = kt
		}
		// Graph nodes include the memset clearing the attention metadata.
		g.device(catMemset, "Memset (Device)", nil, kt, 900, 0, corr, [3]int{}, int64(4*bs), nil)
		kt += 900 + int64(g.jitter(500, 900))
		for i, op := range ops {
			d := int64(op.wDecode / totalW * gpuBudget * g.jitter(0.9, 1.1))
			if op.comm == "allreduce" {
				d += g.commWait(i, d)
			}
			d = max(d, 1200)
			g.device(catKernel, op.k.name, op.k, kt, d, 0, corr, g.grid(op.k, bs, toks), 0, nil)
			kt += d + int64(g.jitter(700, 1300))
		}
		gpuT = kt
		cpuT = end + 5*us
	} else {
		n := int64(len(ops))
		spacing := min(max(int64(float64(D)*0.5)/max(n, 1), 4*us), 35*us)
		// Clear the attention metadata buffer (cudaMemsetAsync).
		ext := g.nextExt()
		g.cpu = append(g.cpu, ev{cat: catCPUOp, name: "aten::zero_", pid: g.sp.pid, tid: g.sp.pid, ts: cpuT, dur: 10 * us, ext: ext})
		g.cpu = append(g.cpu, ev{cat: catCPUOp, name: "aten::fill_", pid: g.sp.pid, tid: g.sp.pid, ts: cpuT + us, dur: 8 * us, ext: g.nextExt()})
		ext = g.ext
		corr := g.nextCorr()
		g.launch("cudaMemsetAsync", 51, false, cpuT+2*us, 5*us, ext, corr, true)
		mt := max(cpuT+8*us, gpuT+us)
		g.device(catMemset, "Memset (Device)", nil, mt, 900, ext, corr, [3]int{}, int64(4*bs), nil)
		firstGPU, gpuT = mt, mt+900
		cpuT += 12 * us
		pyModel := g.pyEv("/sgl-workspace/sglang/python/sglang/srt/models/qwen3.py(410): forward", cpuT, n*spacing, pyFwd)
		perLayer := len(g.layerOps(decode))
		for i, op := range ops {
			if g.sp.withStack && i >= 1 && (i-1)%perLayer == 0 && (i-1)/perLayer < g.sp.layers {
				call := g.pyEv("torch/nn/modules/module.py(1783): _call_impl", cpuT, int64(perLayer)*spacing-us, pyModel)
				g.pyEv("/sgl-workspace/sglang/python/sglang/srt/models/qwen3.py(262): forward", cpuT+us, int64(perLayer)*spacing-3*us, call)
			}
			depth := int64(len(op.cpu))
			launchTS := cpuT + depth*us + us
			launchDur := int64(g.jitter(3500, 7500))
			opEnd := launchTS + launchDur + us
			var ext int64
			for j, name := range op.cpu {
				sh := ""
				if g.sp.recordShape && op.shapes != nil && j == 0 {
					sh = op.shapes(bs, toks)
				}
				idx := g.cpuEv(catCPUOp, name, cpuT+int64(j)*us, opEnd-(cpuT+int64(j)*us)+int64(len(op.cpu)-j)*us, sh)
				ext = g.cpu[idx].ext
			}
			var coll *collArgs
			if op.comm != "" {
				nel := int64(toks * hiddenSize)
				ranks := g.groupRanks()
				coll = &collArgs{name: op.comm, nelems: nel, group: g.sp.tpSize, ranks: ranks}
				g.cpu[len(g.cpu)-1].coll = coll
				g.cpuEv(catUserAnn, "nccl:all_reduce", cpuT+us, launchDur+2*us, "")
				if op.comm != "allreduce" {
					g.cpu[len(g.cpu)-1].name = "nccl:" + op.comm
				}
			}
			corr := g.nextCorr()
			name, cbid := "cudaLaunchKernel", 211
			if op.k.driver {
				name, cbid = "cuLaunchKernelEx", 652
			}
			g.launch(name, cbid, op.k.driver, launchTS, launchDur, ext, corr, true)
			w := op.wExtend
			if decode {
				w = op.wDecode
			}
			d := int64(w / totalW * gpuBudget * g.jitter(0.9, 1.1))
			if op.comm == "allreduce" {
				d += g.commWait(i, d)
			}
			d = max(d, 1100)
			kt := max(launchTS+launchDur+int64(g.jitter(1500, 3500)), gpuT+int64(g.jitter(600, 1400)))
			if firstGPU < 0 {
				firstGPU = kt
			}
			g.device(catKernel, op.k.name, op.k, kt, d, ext, corr, g.grid(op.k, bs, toks), 0, coll)
			gpuT = kt + d
			cpuT += spacing
		}
	}
	lastGPU := gpuT
	// The annotation closes when the CPU side of the forward returns.
	g.cpu[annIdx].dur = cpuT - g.cpu[annIdx].ts
	g.gpuAnn = append(g.gpuAnn, ev{cat: catGPUUserAnn, name: label, pid: g.sp.device, tid: cudaStreamID, ts: firstGPU - 1, dur: lastGPU - firstGPU + 2, ext: annExt})

	if g.sp.lastStage {
		// Sampling and the device-to-host copy of the next token ids.
		ext := g.nextExt()
		g.cpu = append(g.cpu, ev{cat: catCPUOp, name: "aten::argmax", pid: g.sp.pid, tid: g.sp.pid, ts: cpuT, dur: 12 * us, ext: ext})
		corr := g.nextCorr()
		g.launch("cudaLaunchKernel", 211, false, cpuT+3*us, 5*us, ext, corr, true)
		kt := max(cpuT+10*us, gpuT+us)
		kd := int64(3*us) + int64(bs)*50
		g.device(catKernel, kArgMax.name, kArgMax, kt, kd, ext, corr, g.grid(kArgMax, bs, toks), 0, nil)
		gpuT = kt + kd
		cpuT += 15 * us
		ext = g.nextExt()
		g.cpu = append(g.cpu, ev{cat: catCPUOp, name: "aten::copy_", pid: g.sp.pid, tid: g.sp.pid, ts: cpuT, dur: 8 * us, ext: ext})
		corr = g.nextCorr()
		g.launch("cudaMemcpyAsync", 41, false, cpuT+2*us, 4*us, ext, corr, true)
		mt := max(cpuT+8*us, gpuT+us)
		g.device(catMemcpy, "Memcpy DtoH (Device -> Pinned)", nil, mt, 1800, ext, corr, [3]int{}, int64(bs*8), nil)
		gpuT = mt + 1800
		cpuT += 10 * us
		corr = g.nextCorr()
		g.launch("cudaEventRecord", 135, false, cpuT, 2*us, 0, corr, false)
		cpuT += 3 * us
		corr = g.nextCorr()
		syncEnd := max(cpuT+2*us, gpuT+2*us)
		g.launch("cudaStreamSynchronize", 131, false, cpuT, syncEnd-cpuT, 0, corr, false)
		cpuT = syncEnd
	}
}

// commWait is how long this rank's all-reduce kernel waits for the slowest
// peer: every rank derives all peers' arrival jitter from the same hash.
func (g *gen) commWait(opIndex int, base int64) int64 {
	if g.sp.tpSize < 2 {
		return 0
	}
	arrive := func(r int) float64 {
		return unit(uint64(g.sp.seed), g.stepIdx, uint64(opIndex), uint64(r), uint64(g.sp.rank.PP), uint64(g.sp.rank.DP))
	}
	latest := 0.0
	for r := 0; r < g.sp.tpSize; r++ {
		latest = math.Max(latest, arrive(r))
	}
	return int64((latest - arrive(g.sp.rank.TP)) * 0.6 * float64(base))
}

func (g *gen) groupRanks() string {
	s := "["
	first := g.sp.rank.PP * g.sp.tpSize
	for i := 0; i < g.sp.tpSize; i++ {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprint(first + i)
	}
	return s + "]"
}

func (g *gen) grid(k *kernelSpec, bs, toks int) [3]int {
	return [3]int{k.gridX(bs, toks), k.gridY, 1}
}

// buildTrace generates all events of one rank.
func buildTrace(sp *traceSpec) *gen {
	g := &gen{sp: sp, base: baseTimeNS(sp.start), corr: 100 + uint64(sp.globalRank)}
	startNS, stopNS := g.rel(sp.start), g.rel(sp.stop)
	g.loopPy = g.pyEv("/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py(1106): event_loop_overlap", startNS, max(stopNS-startNS, us), 0)
	g.act = append(g.act, ev{cat: catOverhead, name: "Activity Buffer Request", pid: -1, tid: 0, ts: startNS + 50*us, dur: 1800 * us})
	for _, st := range sp.steps {
		g.step(st)
	}
	return g
}
