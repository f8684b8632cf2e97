package trace

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
)

type interval struct{ start, end int64 }

// union merges intervals (sorted by start in place) and returns the merged
// list and its total length.
func union(iv []interval) ([]interval, int64) {
	if len(iv) == 0 {
		return nil, 0
	}
	slices.SortFunc(iv, func(a, b interval) int { return cmp.Compare(a.start, b.start) })
	out := iv[:1]
	for _, x := range iv[1:] {
		last := &out[len(out)-1]
		if x.start <= last.end {
			last.end = max(last.end, x.end)
			continue
		}
		out = append(out, x)
	}
	var total int64
	for _, x := range out {
		total += x.end - x.start
	}
	return out, total
}

// overlap returns how much of [s, e) the merged, sorted list covers.
func overlap(merged []interval, s, e int64) int64 {
	if e <= s {
		return 0
	}
	i := sort.Search(len(merged), func(i int) bool { return merged[i].end > s })
	var t int64
	for ; i < len(merged) && merged[i].start < e; i++ {
		t += min(e, merged[i].end) - max(s, merged[i].start)
	}
	return t
}

// intersect returns the total overlap of two merged, sorted lists.
func intersect(a, b []interval) int64 {
	var t int64
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		s := max(a[i].start, b[j].start)
		e := min(a[i].end, b[j].end)
		if e > s {
			t += e - s
		}
		if a[i].end < b[j].end {
			i++
		} else {
			j++
		}
	}
	return t
}

func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	// Nearest-rank percentile: exact sample values, stable for diffs.
	k := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

// timelineBins is the resolution of each device's busy profile kept per
// rank; the session re-bins it onto its own window.
const timelineBins = 2048

// rankResult is a finished rank plus what the session-level passes need.
type rankResult struct {
	sum     RankSummary
	kernels map[string]*KernelStat
	// leader step data for session aggregation
	walls            map[string][]int64
	absStart, absEnd int64
	devBins          []devBins
	bubbleCPU        map[string]*CPUWork
	collectives      []collective
	stepWalls        []int64
	stepModes        []string
	actTime          int64
	graphTime        int64
}

type devBins struct {
	device     int
	start, end int64
	busy       []int64 // ns busy per bin over [start, end)
}

type collective struct {
	start, dur int64
	name       string
}

type stepAcc struct {
	minTs, maxEnd int64
	iv            []interval
	kernels       int
	comm          int64
	graph         bool
	eager, gated  int
	calls         int
}

// finalize turns a collector into a rank summary.
func (c *collector) finalize(topN int) *rankResult {
	res := &rankResult{kernels: map[string]*KernelStat{}, walls: map[string][]int64{}, bubbleCPU: map[string]*CPUWork{}}
	s := &res.sum
	s.Label = c.label
	s.Rank = c.rank
	s.File = c.file
	s.BaseTimeNanoseconds = c.base
	s.Distributed = c.dist
	s.Events = EventCounts{Total: c.total, ByPh: c.byPh, ByCat: c.byCat}
	s.OverheadNs = c.overhead
	res.absStart, res.absEnd = c.minTs, c.maxEnd

	names := c.names.names
	families := make([]string, len(names))
	famOf := func(a *gpuAct) string {
		if f := families[a.name]; f != "" {
			return f
		}
		cat := "kernel"
		switch a.kind {
		case kindMemcpy:
			cat = "gpu_memcpy"
		case kindMemset:
			cat = "gpu_memset"
		}
		f := Classify(names[a.name], cat)
		families[a.name] = f
		return f
	}

	// GPU activities in start order.
	acts := c.gpu
	slices.SortStableFunc(acts, func(a, b gpuAct) int { return cmp.Compare(a.ts, b.ts) })

	// Launch calls by correlation -> GPU activities.
	byCorr := make([]int32, 0, len(acts))
	for i := range acts {
		if acts[i].hasCorr {
			byCorr = append(byCorr, int32(i))
		}
	}
	slices.SortStableFunc(byCorr, func(x, y int32) int { return cmp.Compare(acts[x].corr, acts[y].corr) })
	corrRange := func(corr uint64) []int32 {
		lo := sort.Search(len(byCorr), func(i int) bool { return acts[byCorr[i]].corr >= corr })
		hi := lo
		for hi < len(byCorr) && acts[byCorr[hi]].corr == corr {
			hi++
		}
		return byCorr[lo:hi]
	}
	calls := c.calls
	slices.SortStableFunc(calls, func(a, b rtCall) int { return cmp.Compare(a.ts, b.ts) })
	// launchOf maps an activity to its call's index (+1; 0 = none).
	launchOf := make([]int32, len(acts))
	var replayLat, replays int64
	for ci := range calls {
		cl := &calls[ci]
		if cl.sync {
			s.Launch.SyncCalls++
			s.Launch.SyncNs += cl.end - cl.ts
		}
		if !cl.hasCorr {
			continue
		}
		r := corrRange(cl.corr)
		if len(r) == 0 {
			continue
		}
		if cl.graph {
			s.Graph.Launches++
			// r keeps start order (stable sort), so r[0] is the first node.
			replayLat += acts[r[0]].ts - cl.ts
			replays++
		} else {
			s.Launch.Launches++
		}
		for _, ai := range r {
			launchOf[ai] = int32(ci + 1)
			acts[ai].launch = true
			if cl.graph {
				acts[ai].graph = true
			}
		}
	}
	if replays > 0 {
		s.Graph.ReplayLatencyNs = replayLat / replays
	}

	// Per device: busy union, comm union, launch gating, stream overlaps.
	type devAcc struct {
		st         DeviceStat
		busy, comm []interval
		other      []interval
		prevEnd    int64
		started    bool
		lastStream map[int32]int64
	}
	devs := map[int32]*devAcc{}
	var devOrder []int32
	var eager, gated, delaySum int64
	var streamOverlaps int64
	for i := range acts {
		a := &acts[i]
		d := devs[a.device]
		if d == nil {
			d = &devAcc{st: DeviceStat{Device: int(a.device)}, lastStream: map[int32]int64{}}
			devs[a.device] = d
			devOrder = append(devOrder, a.device)
		}
		switch a.kind {
		case kindKernel:
			d.st.Kernels++
		case kindMemcpy:
			d.st.Memcpys++
		case kindMemset:
			d.st.Memsets++
		}
		if a.kind == kindKernel && !a.graph && launchOf[i] > 0 {
			cl := &calls[launchOf[i]-1]
			eager++
			delaySum += a.ts - cl.ts
			if d.started && a.ts > d.prevEnd && cl.end > d.prevEnd {
				gated++
				a.gated = true
			}
		}
		if le, ok := d.lastStream[a.stream]; ok && a.ts < le {
			streamOverlaps++
		}
		d.lastStream[a.stream] = max(d.lastStream[a.stream], a.end)
		if !d.started || a.end > d.prevEnd {
			d.prevEnd = a.end
		}
		d.started = true
		iv := interval{a.ts, a.end}
		d.busy = append(d.busy, iv)
		f := famOf(a)
		if IsComm(f) {
			d.comm = append(d.comm, iv)
			s.Comm.Kernels++
			res.collectives = append(res.collectives, collective{start: a.ts, dur: a.end - a.ts, name: names[a.name]})
		} else {
			d.other = append(d.other, iv)
		}
		dur := a.end - a.ts
		res.actTime += dur
		if a.graph {
			res.graphTime += dur
			s.Graph.Kernels++
		}
		ks := res.kernels[names[a.name]]
		if ks == nil {
			ks = &KernelStat{Name: names[a.name], Family: f, MinNs: dur, MaxNs: dur}
			res.kernels[names[a.name]] = ks
		}
		ks.Count++
		ks.TotalNs += dur
		ks.MinNs = min(ks.MinNs, dur)
		ks.MaxNs = max(ks.MaxNs, dur)
	}
	s.Launch.Gated = gated
	if eager > 0 {
		s.Launch.GatedShare = float64(gated) / float64(eager)
		s.Launch.MeanDelayNs = delaySum / eager
	}
	if res.actTime > 0 {
		s.Graph.Coverage = float64(res.graphTime) / float64(res.actTime)
	}
	s.KernelTimeNs = res.actTime
	s.Collectives = len(res.collectives)

	slices.Sort(devOrder)
	var primary *devAcc
	var primaryBusy []interval
	for _, dv := range devOrder {
		d := devs[dv]
		merged, busy := union(d.busy)
		d.st.BusyNs = busy
		first, last := merged[0].start, merged[len(merged)-1].end
		d.st.SpanNs = last - first
		d.st.IdleNs = d.st.SpanNs - busy
		d.st.StartNs = first
		if d.st.SpanNs > 0 {
			d.st.Utilization = float64(busy) / float64(d.st.SpanNs)
		}
		for _, p := range c.devs {
			if p.ID == int(dv) {
				d.st.Name = p.Name
			}
		}
		commMerged, commBusy := union(d.comm)
		otherMerged, _ := union(d.other)
		s.Comm.BusyNs += commBusy
		s.Comm.ExposedNs += commBusy - intersect(commMerged, otherMerged)
		s.GPUBusyNs += busy
		s.GPUSpanNs += d.st.SpanNs
		s.GPUIdleNs += d.st.IdleNs
		res.devBins = append(res.devBins, binBusy(int(dv), merged, first, last))
		s.Devices = append(s.Devices, d.st)
		if primary == nil || d.st.Kernels+d.st.Memcpys+d.st.Memsets > primary.st.Kernels+primary.st.Memcpys+primary.st.Memsets {
			primary = d
			primaryBusy = merged
		}
		d.busy, d.comm, d.other = nil, nil, nil
	}
	if s.GPUSpanNs > 0 {
		s.Utilization = float64(s.GPUBusyNs) / float64(s.GPUSpanNs)
	}
	if s.GPUBusyNs > 0 {
		s.Comm.Share = float64(s.Comm.BusyNs) / float64(s.GPUBusyNs)
	}

	// Families and top kernels.
	famTotals := map[string]*FamilyStat{}
	for _, k := range res.kernels {
		fs := famTotals[k.Family]
		if fs == nil {
			fs = &FamilyStat{Family: k.Family}
			famTotals[k.Family] = fs
		}
		fs.Count += k.Count
		fs.TotalNs += k.TotalNs
	}
	s.Families = familyList(famTotals, res.actTime)
	s.TopKernels = topKernels(res.kernels, res.actTime, topN)

	// Steps.
	c.computeSteps(res, acts, calls, corrRange, famOf, primaryBusy)
	if len(s.Steps) > 0 && eager > 0 {
		var span, busy int64
		for _, st := range s.Steps {
			if !st.Graph {
				span += st.GPUSpanNs
				busy += st.GPUBusyNs
			}
		}
		s.Launch.LaunchBound = s.Launch.GatedShare > 0.5 && span > 0 && float64(busy) < 0.5*float64(span)
	}
	s.Bubbles.CPU = topCPU(res.bubbleCPU, 10)

	// Warnings.
	s.Events.ByPh = c.byPh
	warn := func(code, msg string, args ...any) {
		res.sum.Warnings = append(res.sum.Warnings, Warning{Code: code, Rank: c.label, Message: fmt.Sprintf(msg, args...)})
	}
	if c.total > 0 && c.python*2 > c.total {
		warn(WarnPythonHeavy, "python_function events are %.0f%% of the trace: with_stack profiling inflates CPU-side times; profile with SGLANG_PROFILE_WITH_STACK=false for timing-accurate host numbers", 100*float64(c.python)/float64(c.total))
	}
	if win := c.maxEnd - c.minTs; win > 0 && c.overhead*100 > win {
		warn(WarnCuptiOverhead, "CUPTI overhead records cover %.1f%% of the trace window: the profiler itself distorted the timeline", 100*float64(c.overhead)/float64(win))
	}
	if c.flows == 0 && len(acts) > 0 {
		warn(WarnNoFlows, "the trace has no ac2g flow events (trimmed or sampled trace?): CPU-GPU links rely on correlation ids only")
	}
	if len(acts) == 0 {
		warn(WarnNoGPU, "the trace holds no GPU kernels, memcpys or memsets: was the CUDA activity profiled?")
	}
	if !c.hasBase {
		warn(WarnNoBaseTime, "the trace has no baseTimeNanoseconds (older Kineto): cross-rank alignment assumes absolute timestamps")
	}
	if streamOverlaps > 0 && len(acts) > 0 && streamOverlaps*100 > int64(len(acts)) {
		warn(WarnStreamOverlap, "%d GPU activities overlap an earlier one on the same stream (programmatic dependent launch or bad durations): busy time uses the interval union", streamOverlaps)
	}
	if len(c.steps) == 0 {
		warn(WarnNoSteps, "no SGLang step[...] annotations: the per-step table, prefill/decode split and bubbles are unavailable")
	}
	partial := 0
	for _, st := range s.Steps {
		if st.Partial {
			partial++
		}
	}
	if partial > 0 {
		warn(WarnPartialStep, "%d step(s) have no GPU work inside the profiling window (partially captured first/last step); they are excluded from step statistics", partial)
	}
	for _, m := range s.Modes {
		if (m.Mode == "DECODE" || m.Mode == "TARGET_VERIFY") && m.Steps > 0 && m.GraphSteps == 0 {
			warn(WarnEagerDecode, "%d %s steps ran eagerly, without CUDA graphs: launch overhead dominates small batches (check --disable-cuda-graph and --cuda-graph-max-bs)", m.Steps, m.Mode)
		}
	}
	if s.Launch.LaunchBound {
		warn(WarnLaunchBound, "eager steps are launch-bound: %.0f%% of eager kernels waited for their launch and the GPU was busy less than half of the steps' GPU time", 100*s.Launch.GatedShare)
	}
	return res
}

// binBusy spreads merged busy intervals over timelineBins bins of [start, end).
func binBusy(device int, merged []interval, start, end int64) devBins {
	db := devBins{device: device, start: start, end: end, busy: make([]int64, timelineBins)}
	w := end - start
	if w <= 0 {
		return db
	}
	binStart := func(b int) int64 { return start + int64(b)*w/timelineBins }
	for _, iv := range merged {
		b := int((iv.start - start) * timelineBins / w)
		b = max(0, min(b, timelineBins-1))
		for b > 0 && binStart(b) > iv.start {
			b--
		}
		for ; b < timelineBins && binStart(b) < iv.end; b++ {
			be := end
			if b+1 < timelineBins {
				be = binStart(b + 1)
			}
			if seg := min(iv.end, be) - max(iv.start, binStart(b)); seg > 0 {
				db.busy[b] += seg
			}
		}
	}
	return db
}

func familyList(m map[string]*FamilyStat, total int64) []FamilyStat {
	out := make([]FamilyStat, 0, len(m))
	for _, f := range m {
		fs := *f
		if total > 0 {
			fs.Share = float64(fs.TotalNs) / float64(total)
		}
		out = append(out, fs)
	}
	slices.SortFunc(out, func(a, b FamilyStat) int {
		return cmp.Or(cmp.Compare(b.TotalNs, a.TotalNs), cmp.Compare(a.Family, b.Family))
	})
	return out
}

func topKernels(m map[string]*KernelStat, total int64, n int) []KernelStat {
	out := make([]KernelStat, 0, len(m))
	for _, k := range m {
		ks := *k
		if ks.Count > 0 {
			ks.MeanNs = ks.TotalNs / ks.Count
		}
		if total > 0 {
			ks.Share = float64(ks.TotalNs) / float64(total)
		}
		out = append(out, ks)
	}
	slices.SortFunc(out, func(a, b KernelStat) int {
		return cmp.Or(cmp.Compare(b.TotalNs, a.TotalNs), cmp.Compare(a.Name, b.Name))
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

func topCPU(m map[string]*CPUWork, n int) []CPUWork {
	out := make([]CPUWork, 0, len(m))
	for _, w := range m {
		out = append(out, *w)
	}
	slices.SortFunc(out, func(a, b CPUWork) int { return cmp.Or(cmp.Compare(b.Ns, a.Ns), cmp.Compare(a.Name, b.Name)) })
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
