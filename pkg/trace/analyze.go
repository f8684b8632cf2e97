package trace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"

	"github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"
)

// AnalyzeOptions tunes the analysis.
type AnalyzeOptions struct {
	// Profile selects a profile when a directory holds several.
	Profile string
	// TopKernels is the length of each rank's top-kernel list (default 20).
	TopKernels int
	// MaxKernels bounds the session's kernel list (default 200).
	MaxKernels int
	// TimelineBuckets is the resolution of each device's timeline (default 120).
	TimelineBuckets int
	// Concurrency is how many files are analysed at once (default
	// GOMAXPROCS); each holds its GPU activities in memory meanwhile.
	Concurrency int
}

func (o *AnalyzeOptions) defaults() {
	if o.TopKernels <= 0 {
		o.TopKernels = 20
	}
	if o.MaxKernels <= 0 {
		o.MaxKernels = 200
	}
	if o.TimelineBuckets <= 0 {
		o.TimelineBuckets = 120
	}
	if o.Concurrency <= 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
}

// AnalyzePath analyses a trace file (per-rank or merged) or a directory of
// per-rank traces (see Discover).
func AnalyzePath(ctx context.Context, path string, opts AnalyzeOptions) (*Summary, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("trace %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("trace %s: %w", path, err)
	}
	var files []RankFile
	if st.IsDir() {
		files, err = Discover(path, DiscoverOptions{Profile: opts.Profile})
		if err != nil {
			return nil, err
		}
	} else {
		rf, ok := ParseRankFile(path)
		if !ok {
			rf = RankFile{Path: path}
		}
		files = []RankFile{rf}
	}
	return AnalyzeFiles(ctx, files, opts)
}

// AnalyzeFiles analyses per-rank trace files (in rank order) as one
// session. Files are read in one streaming pass each, in parallel.
func AnalyzeFiles(ctx context.Context, files []RankFile, opts AnalyzeOptions) (*Summary, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("analyze: no trace files given: %w", errdefs.ErrInvalidArgument)
	}
	opts.defaults()
	labels := fileLabels(files)
	results := make([][]*rankResult, len(files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Concurrency)
	for i, f := range files {
		g.Go(func() error {
			cols, err := collectFile(gctx, f, labels[i])
			if err != nil {
				return err
			}
			for _, c := range cols {
				if f.Rank.Stage != "" && c.rank.Stage == "" {
					c.rank.Stage = f.Rank.Stage
				}
				r := c.finalize(opts.TopKernels)
				if c.rank.Stage != "" {
					r.sum.Label += " " + c.rank.Stage
				}
				results[i] = append(results[i], r)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var ranks []*rankResult
	for _, rs := range results {
		if len(rs) > 1 {
			slices.SortStableFunc(rs, func(a, b *rankResult) int { return compareRanks(a.sum.Rank, b.sum.Rank) })
		}
		ranks = append(ranks, rs...)
	}
	return assemble(ranks, opts), nil
}

// assemble builds the session summary from finished ranks.
func assemble(ranks []*rankResult, opts AnalyzeOptions) *Summary {
	s := &Summary{Version: SummaryVersion, Events: EventCounts{ByPh: map[string]int64{}, ByCat: map[string]int64{}}}
	origin, end, any := int64(0), int64(0), false
	for _, r := range ranks {
		if r.sum.Events.Total == 0 || (r.absStart == 0 && r.absEnd == 0) {
			continue
		}
		if !any || r.absStart < origin {
			origin = r.absStart
		}
		if !any || r.absEnd > end {
			end = r.absEnd
		}
		any = true
	}
	if origin > 1e18 {
		s.OriginUnixNs = origin
	}
	s.WindowNs = end - origin

	hasLeader := false
	for _, r := range ranks {
		if r.sum.Rank.TP == 0 && r.sum.Rank.PP == 0 {
			hasLeader = true
		}
	}
	devNames := map[string]bool{}
	kernels := map[string]*KernelStat{}
	fams := map[string]*FamilyStat{}
	var actTime, graphTime int64
	type modeAgg struct {
		stat  ModeStat
		walls []int64
		bs    map[int][]int64
		fams  map[string]*FamilyStat
		time  int64
	}
	modes := map[string]*modeAgg{}
	bubbleCPU := map[string]*CPUWork{}
	var bubbleWindow float64
	var spanSum int64
	for i, r := range ranks {
		rs := &r.sum
		rs.Leader = r.sum.Rank.TP == 0 && r.sum.Rank.PP == 0 || (!hasLeader && i == 0)
		rs.StartNs = r.absStart - origin
		rs.EndNs = r.absEnd - origin
		for d := range rs.Devices {
			rs.Devices[d].StartNs -= origin
			rs.Devices[d].Timeline = rebin(r.devBins[d], origin, s.WindowNs, opts.TimelineBuckets)
			if n := rs.Devices[d].Name; n != "" {
				devNames[n] = true
			}
		}
		for k := range rs.Steps {
			rs.Steps[k].StartNs -= origin
		}
		s.Events.Total += rs.Events.Total
		for k, v := range rs.Events.ByPh {
			s.Events.ByPh[k] += v
		}
		for k, v := range rs.Events.ByCat {
			s.Events.ByCat[k] += v
		}
		s.GPUBusyNs += rs.GPUBusyNs
		s.GPUIdleNs += rs.GPUIdleNs
		spanSum += rs.GPUSpanNs
		s.KernelTimeNs += rs.KernelTimeNs
		actTime += r.actTime
		graphTime += r.graphTime
		for name, k := range r.kernels {
			agg := kernels[name]
			if agg == nil {
				agg = &KernelStat{Name: name, Family: k.Family, MinNs: k.MinNs, MaxNs: k.MaxNs}
				kernels[name] = agg
			}
			agg.Count += k.Count
			agg.TotalNs += k.TotalNs
			agg.MinNs = min(agg.MinNs, k.MinNs)
			agg.MaxNs = max(agg.MaxNs, k.MaxNs)
			f := fams[k.Family]
			if f == nil {
				f = &FamilyStat{Family: k.Family}
				fams[k.Family] = f
			}
			f.Count += k.Count
			f.TotalNs += k.TotalNs
		}
		s.Comm.Kernels += rs.Comm.Kernels
		s.Comm.BusyNs += rs.Comm.BusyNs
		s.Comm.ExposedNs += rs.Comm.ExposedNs
		s.Graph.Launches += rs.Graph.Launches
		s.Graph.Kernels += rs.Graph.Kernels
		s.Warnings = append(s.Warnings, rs.Warnings...)
		if !rs.Leader {
			continue
		}
		// Steps: leaders only.
		s.Steps += len(rs.Steps)
		for _, m := range rs.Modes {
			agg := modes[m.Mode]
			if agg == nil {
				agg = &modeAgg{stat: ModeStat{Mode: m.Mode}, bs: map[int][]int64{}, fams: map[string]*FamilyStat{}}
				modes[m.Mode] = agg
			}
			a := &agg.stat
			a.Steps += m.Steps
			a.Tokens += m.Tokens
			a.TokensPerSec += m.TokensPerSec
			a.TotalNs += m.TotalNs
			a.GPUBusyNs += m.GPUBusyNs
			a.CommNs += m.CommNs
			a.Kernels += m.Kernels
			a.GraphSteps += m.GraphSteps
			a.LaunchBoundSteps += m.LaunchBoundSteps
			agg.walls = append(agg.walls, r.walls[m.Mode]...)
			for _, f := range m.Families {
				fa := agg.fams[f.Family]
				if fa == nil {
					fa = &FamilyStat{Family: f.Family}
					agg.fams[f.Family] = fa
				}
				fa.Count += f.Count
				fa.TotalNs += f.TotalNs
				agg.time += f.TotalNs
			}
		}
		for _, st := range rs.Steps {
			if !st.Partial {
				if agg := modes[st.Mode]; agg != nil {
					agg.bs[st.BS] = append(agg.bs[st.BS], st.WallNs)
				}
			}
		}
		b := rs.Bubbles
		s.Bubbles.Count += b.Count
		s.Bubbles.TotalNs += b.TotalNs
		s.Bubbles.MaxNs = max(s.Bubbles.MaxNs, b.MaxNs)
		s.Bubbles.SyncNs += b.SyncNs
		s.Bubbles.UnattributedNs += b.UnattributedNs
		if b.Share > 0 {
			bubbleWindow += float64(b.TotalNs) / b.Share
		}
		for name, w := range r.bubbleCPU {
			agg := bubbleCPU[name]
			if agg == nil {
				agg = &CPUWork{Name: name}
				bubbleCPU[name] = agg
			}
			agg.Count += w.Count
			agg.Ns += w.Ns
		}
	}
	if spanSum > 0 {
		s.Utilization = float64(s.GPUBusyNs) / float64(spanSum)
	}
	if s.GPUBusyNs > 0 {
		s.Comm.Share = float64(s.Comm.BusyNs) / float64(s.GPUBusyNs)
	}
	if actTime > 0 {
		s.Graph.Coverage = float64(graphTime) / float64(actTime)
	}
	var lat, launches int64
	for _, r := range ranks {
		lat += r.sum.Graph.ReplayLatencyNs * r.sum.Graph.Launches
		launches += r.sum.Graph.Launches
	}
	if launches > 0 {
		s.Graph.ReplayLatencyNs = lat / launches
	}
	s.Families = familyList(fams, actTime)
	s.Kernels = topKernels(kernels, actTime, opts.MaxKernels)
	s.KernelsTruncated = len(kernels) > len(s.Kernels)
	for _, agg := range modes {
		ms := agg.stat
		fillDistribution(&ms, agg.walls)
		if ms.Steps > 0 {
			ms.GraphCoverage = float64(ms.GraphSteps) / float64(ms.Steps)
		}
		ms.Families = familyList(agg.fams, agg.time)
		ms.ByBatch = batchStats(agg.bs)
		s.Modes = append(s.Modes, ms)
	}
	sortModes(s.Modes)
	if s.Bubbles.Count > 0 {
		s.Bubbles.MeanNs = s.Bubbles.TotalNs / int64(s.Bubbles.Count)
	}
	if bubbleWindow > 0 {
		s.Bubbles.Share = float64(s.Bubbles.TotalNs) / bubbleWindow
	}
	s.Bubbles.CPU = topCPU(bubbleCPU, 10)
	for n := range devNames {
		s.Devices = append(s.Devices, n)
	}
	slices.Sort(s.Devices)

	s.Imbalance = imbalance(ranks, origin)
	if s.Imbalance != nil {
		for _, rw := range s.Imbalance.Ranks {
			s.Comm.WaitNs += rw.WaitNs
		}
		for _, r := range ranks {
			for _, rw := range s.Imbalance.Ranks {
				if rw.Label == r.sum.Label {
					r.sum.Comm.WaitNs = rw.WaitNs
				}
			}
		}
		if !s.Imbalance.SameTimeBase {
			s.Warnings = append(s.Warnings, Warning{Code: WarnBaseTimeMismatch, Message: "ranks have different baseTimeNanoseconds (different hosts or profiling periods): cross-rank start times are not comparable; waits use durations only"})
		}
		if im := s.Imbalance; im.Straggler != "" && im.MaxWait != nil {
			s.Warnings = append(s.Warnings, Warning{Code: WarnStraggler, Rank: im.Straggler, Message: fmt.Sprintf(
				"%s is a straggler: other ranks waited %s for it in collectives; the largest wait was %s by %s in collective #%d (%s)",
				im.Straggler, fmtDur(straggledNs(im)), fmtDur(im.MaxWait.WaitNs), im.MaxWait.Label, im.MaxWait.Ordinal, shortName(im.MaxWait.Kernel, 60))})
		}
	}
	s.Warnings = dedupeWarnings(s.Warnings)
	s.Ranks = make([]RankSummary, len(ranks))
	for i, r := range ranks {
		s.Ranks[i] = r.sum
	}
	return s
}

func straggledNs(im *Imbalance) int64 {
	for _, r := range im.Ranks {
		if r.Label == im.Straggler {
			return r.CausedNs
		}
	}
	return 0
}

// rebin spreads a device's fine busy bins onto the session's buckets.
func rebin(db devBins, origin, window int64, buckets int) []float64 {
	if window <= 0 || buckets <= 0 {
		return nil
	}
	out := make([]float64, buckets)
	bw := float64(window) / float64(buckets)
	w := db.end - db.start
	if w <= 0 {
		return out
	}
	for j, busy := range db.busy {
		if busy == 0 {
			continue
		}
		bs := float64(db.start-origin) + float64(w)*float64(j)/float64(len(db.busy))
		be := float64(db.start-origin) + float64(w)*float64(j+1)/float64(len(db.busy))
		// Spread busy uniformly over [bs, be).
		for k := max(0, int(bs/bw)); k < buckets && float64(k)*bw < be; k++ {
			ks, ke := float64(k)*bw, float64(k+1)*bw
			ov := min(be, ke) - max(bs, ks)
			if ov > 0 {
				out[k] += float64(busy) * ov / (be - bs)
			}
		}
	}
	for k := range out {
		out[k] = min(1, out[k]/bw)
	}
	return out
}

// imbalance compares the ranks of the largest stage group.
func imbalance(ranks []*rankResult, origin int64) *Imbalance {
	groups := map[string][]*rankResult{}
	var order []string
	for _, r := range ranks {
		st := r.sum.Rank.Stage
		if _, ok := groups[st]; !ok {
			order = append(order, st)
		}
		groups[st] = append(groups[st], r)
	}
	var rs []*rankResult
	for _, st := range order {
		if len(groups[st]) > len(rs) {
			rs = groups[st]
		}
	}
	if len(rs) < 2 {
		return nil
	}
	im := &Imbalance{SameTimeBase: true, Aligned: true}
	var sum int64
	n := -1
	for i, r := range rs {
		b := r.sum.GPUBusyNs
		if i == 0 || b < im.MinBusyNs {
			im.MinBusyNs = b
		}
		im.MaxBusyNs = max(im.MaxBusyNs, b)
		sum += b
		if r.sum.BaseTimeNanoseconds != rs[0].sum.BaseTimeNanoseconds {
			im.SameTimeBase = false
		}
		if n >= 0 && len(r.collectives) != n {
			im.Aligned = false
		}
		if n < 0 || len(r.collectives) < n {
			n = len(r.collectives)
		}
		im.Ranks = append(im.Ranks, RankWait{Label: r.sum.Label, BusyNs: b})
	}
	if mean := float64(sum) / float64(len(rs)); mean > 0 {
		im.BusySpread = float64(im.MaxBusyNs-im.MinBusyNs) / mean
	}
	im.Collectives = n
	var totalWait int64
	for k := 0; k < n; k++ {
		minDur, last := rs[0].collectives[k].dur, 0
		minStart, maxStart := rs[0].collectives[k].start, rs[0].collectives[k].start
		for i, r := range rs {
			c := r.collectives[k]
			if c.dur < minDur {
				minDur, last = c.dur, i
			}
			minStart = min(minStart, c.start)
			maxStart = max(maxStart, c.start)
		}
		if im.SameTimeBase {
			im.MaxStartSkewNs = max(im.MaxStartSkewNs, maxStart-minStart)
		}
		var others int64
		for i, r := range rs {
			c := r.collectives[k]
			w := c.dur - minDur
			im.Ranks[i].WaitNs += w
			others += w
			if w > 0 && (im.MaxWait == nil || w > im.MaxWait.WaitNs) {
				im.MaxWait = &CollectiveWait{Label: r.sum.Label, Ordinal: k, Kernel: c.name, WaitNs: w, DurNs: c.dur, StartNs: c.start - origin, Waited: rs[last].sum.Label}
			}
		}
		if others > 0 {
			im.Ranks[last].LastArrivals++
			im.Ranks[last].CausedNs += others
		}
		totalWait += others
	}
	// The straggler made others wait noticeably: over 1 ms and half of all
	// waiting.
	best := -1
	for i, rw := range im.Ranks {
		if best < 0 || rw.CausedNs > im.Ranks[best].CausedNs {
			best = i
		}
	}
	if best >= 0 && im.Ranks[best].CausedNs > 1e6 && 2*im.Ranks[best].CausedNs > totalWait {
		im.Straggler = im.Ranks[best].Label
	}
	// Steps aligned by ordinal where every rank ran the same mode and bs.
	steps := -1
	for _, r := range rs {
		if steps < 0 || len(r.stepWalls) < steps {
			steps = len(r.stepWalls)
		}
	}
	var spread float64
	aligned := 0
	for k := 0; k < steps; k++ {
		key := rs[0].stepModes[k]
		lo, hi := rs[0].stepWalls[k], rs[0].stepWalls[k]
		ok := true
		for _, r := range rs[1:] {
			if r.stepModes[k] != key {
				ok = false
				break
			}
			lo = min(lo, r.stepWalls[k])
			hi = max(hi, r.stepWalls[k])
		}
		if ok && hi > 0 {
			spread += float64(hi-lo) / float64(hi)
			aligned++
		}
	}
	if aligned > 0 {
		im.StepSpread = spread / float64(aligned)
	}
	return im
}

// dedupeWarnings keeps the first warning of each code and notes how many
// other ranks raised it.
func dedupeWarnings(ws []Warning) []Warning {
	count := map[string]int{}
	for _, w := range ws {
		count[w.Code]++
	}
	seen := map[string]bool{}
	out := []Warning{}
	for _, w := range ws {
		if seen[w.Code] {
			continue
		}
		seen[w.Code] = true
		if n := count[w.Code]; n > 1 {
			w.Message += fmt.Sprintf(" (also on %d other rank(s))", n-1)
			w.Rank = ""
		}
		out = append(out, w)
	}
	slices.SortStableFunc(out, func(a, b Warning) int { return cmp.Compare(warnRank(a.Code), warnRank(b.Code)) })
	return out
}

func warnRank(code string) int {
	switch code {
	case WarnStraggler, WarnLaunchBound, WarnEagerDecode:
		return 0
	case WarnNoGPU, WarnNoSteps, WarnPartialStep:
		return 1
	}
	return 2
}
