package trace

import (
	"cmp"
	"math"
	"slices"
	"sort"
)

// computeSteps joins step annotations to GPU work and fills the step table,
// per-mode statistics and bubbles of res.
func (c *collector) computeSteps(res *rankResult, acts []gpuAct, calls []rtCall, corrRange func(uint64) []int32,
	famOf func(*gpuAct) string, primaryBusy []interval) {
	s := &res.sum
	steps := c.steps
	slices.SortStableFunc(steps, func(a, b stepAnn) int { return cmp.Compare(a.ts, b.ts) })
	accs := make([]stepAcc, len(steps))
	join := func(si int, st stepAnn, match func(th uint64) bool) {
		acc := &accs[si]
		lo := sort.Search(len(calls), func(i int) bool { return calls[i].ts >= st.ts })
		for i := lo; i < len(calls) && calls[i].ts <= st.end; i++ {
			cl := &calls[i]
			if !cl.hasCorr || !match(cl.thread) {
				continue
			}
			r := corrRange(cl.corr)
			if len(r) == 0 {
				continue
			}
			acc.calls++
			if cl.graph {
				acc.graph = true
			}
			for _, ai := range r {
				a := &acts[ai]
				if a.step >= 0 {
					continue
				}
				a.step = int32(si)
				if acc.kernels == 0 || a.ts < acc.minTs {
					acc.minTs = a.ts
				}
				if acc.kernels == 0 || a.end > acc.maxEnd {
					acc.maxEnd = a.end
				}
				acc.kernels++
				acc.iv = append(acc.iv, interval{a.ts, a.end})
				if IsComm(famOf(a)) {
					acc.comm += a.end - a.ts
				}
				if a.kind == kindKernel && !a.graph {
					acc.eager++
					if a.gated {
						acc.gated++
					}
				}
			}
		}
	}
	for si, st := range steps {
		join(si, st, func(th uint64) bool { return th == st.thread })
		if accs[si].kernels == 0 && st.thread>>63 == 0 {
			// Launches from another thread of the same process (an
			// overlap-scheduler worker): match on the pid.
			pid := st.thread >> 32
			join(si, st, func(th uint64) bool { return th>>63 == 0 && th>>32 == pid })
		}
	}

	type modeAcc struct {
		stat  ModeStat
		walls []int64
		bs    map[int][]int64
		fams  map[string]*FamilyStat
		time  int64
	}
	modes := map[string]*modeAcc{}
	var modeOrder []string
	var prevGPUEnd int64
	for si, st := range steps {
		acc := &accs[si]
		step := Step{Index: si, Mode: st.mode, BS: st.bs, Tokens: st.toks, StartNs: st.ts, CPUNs: st.end - st.ts,
			Kernels: acc.kernels, Graph: acc.graph, CommNs: acc.comm}
		if step.Mode == "DECODE" || (step.Tokens == 0 && step.Mode != "IDLE") {
			step.Tokens = st.bs
		}
		step.WallNs = step.CPUNs
		if acc.kernels > 0 {
			step.GPUStartNs = acc.minTs - st.ts
			step.GPUSpanNs = acc.maxEnd - acc.minTs
			_, step.GPUBusyNs = union(acc.iv)
			// A step queued behind earlier steps' GPU work (the CPU ran
			// ahead) starts when that work ends.
			from := st.ts
			if prevGPUEnd > from {
				step.QueuedNs = prevGPUEnd - from
				from = prevGPUEnd
			}
			step.WallNs = max(0, max(st.end, acc.maxEnd)-from)
			prevGPUEnd = max(prevGPUEnd, acc.maxEnd)
			step.LaunchBound = !acc.graph && acc.eager > 0 && 2*acc.gated > acc.eager && 2*step.GPUBusyNs < step.GPUSpanNs
		} else {
			step.Partial = true
		}
		acc.iv = nil
		s.Steps = append(s.Steps, step)
		res.stepWalls = append(res.stepWalls, step.WallNs)
		res.stepModes = append(res.stepModes, stepKey(step))
		if step.Partial {
			continue
		}
		m := modes[st.mode]
		if m == nil {
			m = &modeAcc{stat: ModeStat{Mode: st.mode}, bs: map[int][]int64{}, fams: map[string]*FamilyStat{}}
			modes[st.mode] = m
			modeOrder = append(modeOrder, st.mode)
		}
		ms := &m.stat
		ms.Steps++
		ms.Tokens += int64(step.Tokens)
		ms.TotalNs += step.WallNs
		ms.GPUBusyNs += step.GPUBusyNs
		ms.CommNs += step.CommNs
		ms.Kernels += int64(step.Kernels)
		if step.Graph {
			ms.GraphSteps++
		}
		if step.LaunchBound {
			ms.LaunchBoundSteps++
		}
		m.walls = append(m.walls, step.WallNs)
		m.bs[st.bs] = append(m.bs[st.bs], step.WallNs)
	}
	// Families per mode from the activities joined to steps.
	for i := range acts {
		a := &acts[i]
		if a.step < 0 || s.Steps[a.step].Partial {
			continue
		}
		m := modes[steps[a.step].mode]
		f := famOf(a)
		fs := m.fams[f]
		if fs == nil {
			fs = &FamilyStat{Family: f}
			m.fams[f] = fs
		}
		fs.Count++
		fs.TotalNs += a.end - a.ts
		m.time += a.end - a.ts
	}
	for _, name := range modeOrder {
		m := modes[name]
		ms := m.stat
		fillDistribution(&ms, m.walls)
		if ms.TotalNs > 0 {
			ms.TokensPerSec = float64(ms.Tokens) / (float64(ms.TotalNs) / 1e9)
		}
		if ms.Steps > 0 {
			ms.GraphCoverage = float64(ms.GraphSteps) / float64(ms.Steps)
		}
		ms.Families = familyList(m.fams, m.time)
		ms.ByBatch = batchStats(m.bs)
		res.walls[name] = m.walls
		s.Modes = append(s.Modes, ms)
	}
	sortModes(s.Modes)

	c.computeBubbles(res, accs, steps, calls, primaryBusy)
}

func stepKey(st Step) string {
	return st.Mode + "/" + itoa(st.BS)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// modeRank orders modes prefill-first for reports.
func modeRank(m string) int {
	switch m {
	case "EXTEND":
		return 0
	case "MIXED":
		return 1
	case "DECODE":
		return 2
	case "TARGET_VERIFY":
		return 3
	case "IDLE":
		return 9
	}
	return 5
}

func sortModes(ms []ModeStat) {
	slices.SortStableFunc(ms, func(a, b ModeStat) int {
		return cmp.Or(cmp.Compare(modeRank(a.Mode), modeRank(b.Mode)), cmp.Compare(a.Mode, b.Mode))
	})
}

// fillDistribution sets the distribution fields of ms from wall times.
func fillDistribution(ms *ModeStat, walls []int64) {
	if len(walls) == 0 {
		return
	}
	sorted := slices.Clone(walls)
	slices.Sort(sorted)
	var sum int64
	for _, w := range sorted {
		sum += w
	}
	ms.MeanNs = sum / int64(len(sorted))
	ms.P50Ns = percentile(sorted, 50)
	ms.P90Ns = percentile(sorted, 90)
	ms.P99Ns = percentile(sorted, 99)
	ms.MinNs = sorted[0]
	ms.MaxNs = sorted[len(sorted)-1]
	if len(sorted) > 1 {
		mean := float64(sum) / float64(len(sorted))
		var ss float64
		for _, w := range sorted {
			d := float64(w) - mean
			ss += d * d
		}
		ms.StddevNs = int64(math.Sqrt(ss / float64(len(sorted)-1)))
	}
	ms.WallSamples = sampleWalls(walls, 512)
}

// sampleWalls keeps up to n samples, evenly spaced in step order.
func sampleWalls(walls []int64, n int) []int64 {
	if len(walls) <= n {
		return slices.Clone(walls)
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = walls[i*len(walls)/n]
	}
	return out
}

func batchStats(m map[int][]int64) []BatchStat {
	out := make([]BatchStat, 0, len(m))
	for bs, w := range m {
		sorted := slices.Clone(w)
		slices.Sort(sorted)
		var sum int64
		for _, x := range sorted {
			sum += x
		}
		out = append(out, BatchStat{BS: bs, Steps: len(w), MeanNs: sum / int64(len(w)), P50Ns: percentile(sorted, 50)})
	}
	slices.SortFunc(out, func(a, b BatchStat) int { return cmp.Compare(a.BS, b.BS) })
	return out
}

// computeBubbles finds GPU idle time between consecutive steps and the
// CPU work that ran meanwhile.
func (c *collector) computeBubbles(res *rankResult, accs []stepAcc, steps []stepAnn, calls []rtCall, busy []interval) {
	s := &res.sum
	type gpuSpan struct{ start, end int64 }
	var spans []gpuSpan
	for i := range steps {
		if accs[i].kernels > 0 {
			spans = append(spans, gpuSpan{accs[i].minTs, accs[i].maxEnd})
		}
	}
	if len(spans) < 2 {
		return
	}
	slices.SortFunc(spans, func(a, b gpuSpan) int { return cmp.Compare(a.start, b.start) })
	var gaps []interval
	var idle []int64
	end := spans[0].end
	for _, sp := range spans[1:] {
		if sp.start > end {
			g := interval{end, sp.start}
			id := (g.end - g.start) - overlap(busy, g.start, g.end)
			if id > 0 {
				gaps = append(gaps, g)
				idle = append(idle, id)
			}
		}
		end = max(end, sp.end)
	}
	window := end - spans[0].start
	for _, id := range idle {
		s.Bubbles.Count++
		s.Bubbles.TotalNs += id
		s.Bubbles.MaxNs = max(s.Bubbles.MaxNs, id)
	}
	if s.Bubbles.Count > 0 {
		s.Bubbles.MeanNs = s.Bubbles.TotalNs / int64(s.Bubbles.Count)
	}
	if window > 0 {
		s.Bubbles.Share = float64(s.Bubbles.TotalNs) / float64(window)
	}
	if len(gaps) == 0 {
		return
	}

	// Outermost CPU ops per thread.
	ops := c.ops
	slices.SortFunc(ops, func(a, b cpuOp) int {
		return cmp.Or(cmp.Compare(a.thread, b.thread), cmp.Compare(a.ts, b.ts), cmp.Compare(b.end, a.end))
	})
	var curThread uint64
	var curEnd int64
	for i := range ops {
		o := &ops[i]
		if i == 0 || o.thread != curThread || o.ts >= curEnd {
			o.top = true
			curThread, curEnd = o.thread, o.end
			continue
		}
		curEnd = max(curEnd, o.end)
	}
	cover := make([][]interval, len(gaps))
	names := c.names.names
	for i := range ops {
		o := &ops[i]
		if !o.top {
			continue
		}
		gi := sort.Search(len(gaps), func(k int) bool { return gaps[k].end > o.ts })
		for ; gi < len(gaps) && gaps[gi].start < o.end; gi++ {
			ov := min(o.end, gaps[gi].end) - max(o.ts, gaps[gi].start)
			if ov <= 0 {
				continue
			}
			w := res.bubbleCPU[names[o.name]]
			if w == nil {
				w = &CPUWork{Name: names[o.name]}
				res.bubbleCPU[names[o.name]] = w
			}
			w.Count++
			w.Ns += ov
			cover[gi] = append(cover[gi], interval{max(o.ts, gaps[gi].start), min(o.end, gaps[gi].end)})
		}
	}
	for i := range calls {
		cl := &calls[i]
		if !cl.sync {
			continue
		}
		gi := sort.Search(len(gaps), func(k int) bool { return gaps[k].end > cl.ts })
		for ; gi < len(gaps) && gaps[gi].start < cl.end; gi++ {
			s.Bubbles.SyncNs += min(cl.end, gaps[gi].end) - max(cl.ts, gaps[gi].start)
		}
	}
	for gi, g := range gaps {
		_, covered := union(cover[gi])
		s.Bubbles.UnattributedNs += (g.end - g.start) - covered
	}
}
