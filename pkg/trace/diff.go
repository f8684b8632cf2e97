package trace

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Verdict classifies a change between two summaries.
type Verdict string

// Verdicts.
const (
	Regression   Verdict = "regression"
	Improvement  Verdict = "improvement"
	Unchanged    Verdict = "unchanged"
	Insufficient Verdict = "insufficient_data"
)

// DiffOptions sets the noise thresholds: a change counts only when it
// clears the relative threshold, the absolute minimum and, where a spread is
// known, NoiseSigmas standard errors, with at least MinCount samples on
// each side.
type DiffOptions struct {
	// RelThreshold is the smallest relative change reported (0.05 = 5%).
	RelThreshold float64 `json:"rel_threshold"`
	// MinAbsNs is the smallest absolute change of step and per-step family
	// times.
	MinAbsNs int64 `json:"min_abs_ns"`
	// MinKernelAbsNs is the smallest change of a kernel's mean duration.
	MinKernelAbsNs int64 `json:"min_kernel_abs_ns"`
	// MinCount is the fewest steps or calls on each side for a verdict.
	MinCount int64 `json:"min_count"`
	// NoiseSigmas is how many standard errors a mean must move.
	NoiseSigmas float64 `json:"noise_sigmas"`
	// MinShare ignores kernels under this share of GPU time on both sides
	// (and for added/removed).
	MinShare float64 `json:"min_share"`
	// MinFractionDelta is the smallest change of ratios (utilization,
	// shares), in absolute points (0.02 = 2 points).
	MinFractionDelta float64 `json:"min_fraction_delta"`
}

// DefaultDiffOptions suits nightly profiles of a few hundred steps.
func DefaultDiffOptions() DiffOptions {
	return DiffOptions{RelThreshold: 0.05, MinAbsNs: 20_000, MinKernelAbsNs: 1_000, MinCount: 5, NoiseSigmas: 2,
		MinShare: 0.005, MinFractionDelta: 0.02}
}

// MetricDiff is one compared metric. Times are ns; A is the baseline.
type MetricDiff struct {
	// Kind is "mode", "family", "kernel" or "overall".
	Kind   string  `json:"kind"`
	Name   string  `json:"name"`
	Metric string  `json:"metric"`
	A      float64 `json:"a"`
	B      float64 `json:"b"`
	Delta  float64 `json:"delta"`
	// Rel is Delta/A (0 when A is 0).
	Rel            float64 `json:"rel"`
	CountA         int64   `json:"count_a"`
	CountB         int64   `json:"count_b"`
	HigherIsBetter bool    `json:"higher_is_better"`
	Verdict        Verdict `json:"verdict"`
}

// DiffResult compares summary B against baseline A.
type DiffResult struct {
	// Verdict is Regression when any step-mode or kernel-family metric
	// regressed, Improvement when some improved and none regressed.
	// Kernel-level changes are reported but do not decide it.
	Verdict      Verdict      `json:"verdict"`
	Regressions  int          `json:"regressions"`
	Improvements int          `json:"improvements"`
	Options      DiffOptions  `json:"options"`
	Overall      []MetricDiff `json:"overall"`
	Modes        []MetricDiff `json:"modes"`
	Families     []MetricDiff `json:"families"`
	Kernels      []MetricDiff `json:"kernels"`
	Added        []KernelStat `json:"added"`
	Removed      []KernelStat `json:"removed"`
	// Notes explain limits of the comparison (different rank counts, no
	// steps to normalise by).
	Notes []string `json:"notes,omitempty"`
}

// judge sets Delta, Rel and Verdict. se is the standard error of each side
// (0 when unknown), minAbs the absolute floor.
func (m *MetricDiff) judge(o DiffOptions, minAbs, seA, seB float64, minCount int64) {
	m.Delta = m.B - m.A
	if m.A != 0 {
		m.Rel = m.Delta / math.Abs(m.A)
	}
	if m.CountA < minCount || m.CountB < minCount {
		m.Verdict = Insufficient
		return
	}
	sig := math.Abs(m.Delta) >= minAbs
	if m.A != 0 {
		sig = sig && math.Abs(m.Rel) >= o.RelThreshold
	}
	if seA > 0 || seB > 0 {
		sig = sig && math.Abs(m.Delta) > o.NoiseSigmas*math.Sqrt(seA*seA+seB*seB)
	}
	switch {
	case !sig:
		m.Verdict = Unchanged
	case (m.Delta > 0) == m.HigherIsBetter:
		m.Verdict = Improvement
	default:
		m.Verdict = Regression
	}
}

// Diff compares b against the baseline a.
func Diff(a, b Summary, o DiffOptions) DiffResult {
	if o.RelThreshold == 0 && o.MinAbsNs == 0 && o.MinCount == 0 && o.NoiseSigmas == 0 {
		o = DefaultDiffOptions()
	}
	d := DiffResult{Options: o, Overall: []MetricDiff{}, Modes: []MetricDiff{}, Families: []MetricDiff{}, Kernels: []MetricDiff{},
		Added: []KernelStat{}, Removed: []KernelStat{}}
	if len(a.Ranks) != len(b.Ranks) {
		d.Notes = append(d.Notes, fmt.Sprintf("rank counts differ (%d vs %d): totals are not comparable, per-step and per-call figures are", len(a.Ranks), len(b.Ranks)))
	}

	frac := func(name string, av, bv float64, higher bool) {
		m := MetricDiff{Kind: "overall", Name: name, Metric: "fraction", A: av, B: bv, CountA: 1, CountB: 1, HigherIsBetter: higher}
		m.judge(o, o.MinFractionDelta, 0, 0, 1)
		if m.A != 0 && math.Abs(m.Delta) >= o.MinFractionDelta {
			// Fractions move in points; the relative floor does not apply.
			m.Verdict = map[bool]Verdict{true: Improvement, false: Regression}[(m.Delta > 0) == higher]
		}
		d.Overall = append(d.Overall, m)
	}
	frac("gpu_utilization", a.Utilization, b.Utilization, true)
	frac("bubble_share", a.Bubbles.Share, b.Bubbles.Share, false)
	frac("comm_share", a.Comm.Share, b.Comm.Share, false)
	frac("graph_coverage", a.Graph.Coverage, b.Graph.Coverage, true)

	// Step modes.
	bm := map[string]ModeStat{}
	for _, m := range b.Modes {
		bm[m.Mode] = m
	}
	for _, ma := range a.Modes {
		mb, ok := bm[ma.Mode]
		if !ok {
			d.Notes = append(d.Notes, fmt.Sprintf("mode %s has no steps in the new profile", ma.Mode))
			continue
		}
		n := func(x ModeStat) float64 { return float64(max(x.Steps, 1)) }
		mean := MetricDiff{Kind: "mode", Name: ma.Mode, Metric: "mean_wall_ns", A: float64(ma.MeanNs), B: float64(mb.MeanNs),
			CountA: int64(ma.Steps), CountB: int64(mb.Steps)}
		mean.judge(o, float64(o.MinAbsNs), float64(ma.StddevNs)/math.Sqrt(n(ma)), float64(mb.StddevNs)/math.Sqrt(n(mb)), o.MinCount)
		p50 := MetricDiff{Kind: "mode", Name: ma.Mode, Metric: "p50_wall_ns", A: float64(ma.P50Ns), B: float64(mb.P50Ns),
			CountA: int64(ma.Steps), CountB: int64(mb.Steps)}
		// The median's standard error is about 1.25 times the mean's.
		p50.judge(o, float64(o.MinAbsNs), 1.25*float64(ma.StddevNs)/math.Sqrt(n(ma)), 1.25*float64(mb.StddevNs)/math.Sqrt(n(mb)), o.MinCount)
		tps := MetricDiff{Kind: "mode", Name: ma.Mode, Metric: "tokens_per_sec", A: ma.TokensPerSec, B: mb.TokensPerSec,
			CountA: int64(ma.Steps), CountB: int64(mb.Steps), HigherIsBetter: true}
		tps.judge(o, 0, 0, 0, o.MinCount)
		if ma.Tokens == 0 && mb.Tokens == 0 {
			tps.Verdict = Unchanged
		}
		d.Modes = append(d.Modes, mean, p50, tps)
	}
	for _, mb := range b.Modes {
		found := false
		for _, ma := range a.Modes {
			found = found || ma.Mode == mb.Mode
		}
		if !found {
			d.Notes = append(d.Notes, fmt.Sprintf("mode %s appears only in the new profile", mb.Mode))
		}
	}

	// Families, per step when both profiles have steps.
	perStep := a.Steps > 0 && b.Steps > 0
	// Kernel time adds up every rank while steps count leader ranks only,
	// so divide by steps times ranks per leader: time per step of one rank.
	norm := func(s Summary) float64 {
		if !perStep {
			return 1
		}
		leaders := 0
		for _, r := range s.Ranks {
			if r.Leader {
				leaders++
			}
		}
		return float64(s.Steps) * float64(max(len(s.Ranks), 1)) / float64(max(leaders, 1))
	}
	metric := "ns_per_rank_step"
	if !perStep {
		metric = "total_ns"
		d.Notes = append(d.Notes, "no step annotations on one side: family and kernel totals are compared raw, so profiles of different length differ")
	}
	fa, fb := familyMap(a.Families), familyMap(b.Families)
	for _, name := range Families {
		x, okA := fa[name]
		y, okB := fb[name]
		if !okA && !okB {
			continue
		}
		m := MetricDiff{Kind: "family", Name: name, Metric: metric, A: float64(x.TotalNs) / norm(a), B: float64(y.TotalNs) / norm(b),
			CountA: x.Count, CountB: y.Count}
		minCount := o.MinCount
		if (!okA || !okB) && max(x.Count, y.Count) >= o.MinCount {
			minCount = 0 // a family that appears or vanishes is a change
		}
		m.judge(o, float64(o.MinAbsNs), 0, 0, minCount)
		d.Families = append(d.Families, m)
	}

	// Kernels: mean duration per call.
	ka, kb := kernelMap(a.Kernels), kernelMap(b.Kernels)
	names := map[string]bool{}
	for n := range ka {
		names[n] = true
	}
	for n := range kb {
		names[n] = true
	}
	minTotal := func(ks []KernelStat) int64 {
		if len(ks) == 0 {
			return 0
		}
		return ks[len(ks)-1].TotalNs
	}
	for n := range names {
		x, okA := ka[n]
		y, okB := kb[n]
		switch {
		case okA && okB:
			if x.Share < o.MinShare && y.Share < o.MinShare {
				continue
			}
			m := MetricDiff{Kind: "kernel", Name: n, Metric: "mean_ns", A: float64(x.MeanNs), B: float64(y.MeanNs), CountA: x.Count, CountB: y.Count}
			m.judge(o, float64(o.MinKernelAbsNs), 0, 0, o.MinCount)
			d.Kernels = append(d.Kernels, m)
		case okB && y.Share >= o.MinShare && (!a.KernelsTruncated || y.TotalNs > minTotal(a.Kernels)):
			d.Added = append(d.Added, y)
		case okA && x.Share >= o.MinShare && (!b.KernelsTruncated || x.TotalNs > minTotal(b.Kernels)):
			d.Removed = append(d.Removed, x)
		}
	}
	slices.SortFunc(d.Kernels, func(x, y MetricDiff) int {
		return cmp.Or(cmp.Compare(verdictRank(x.Verdict), verdictRank(y.Verdict)), cmp.Compare(math.Abs(y.Rel), math.Abs(x.Rel)), cmp.Compare(x.Name, y.Name))
	})
	byTotal := func(x, y KernelStat) int {
		return cmp.Or(cmp.Compare(y.TotalNs, x.TotalNs), cmp.Compare(x.Name, y.Name))
	}
	slices.SortFunc(d.Added, byTotal)
	slices.SortFunc(d.Removed, byTotal)

	for _, group := range [][]MetricDiff{d.Modes, d.Families} {
		for _, m := range group {
			switch m.Verdict {
			case Regression:
				d.Regressions++
			case Improvement:
				d.Improvements++
			}
		}
	}
	switch {
	case d.Regressions > 0:
		d.Verdict = Regression
	case d.Improvements > 0:
		d.Verdict = Improvement
	case len(d.Modes) == 0 && len(d.Families) == 0:
		d.Verdict = Insufficient
	default:
		d.Verdict = Unchanged
	}
	return d
}

func verdictRank(v Verdict) int {
	switch v {
	case Regression:
		return 0
	case Improvement:
		return 1
	case Unchanged:
		return 2
	}
	return 3
}

func familyMap(fs []FamilyStat) map[string]FamilyStat {
	m := make(map[string]FamilyStat, len(fs))
	for _, f := range fs {
		m[f.Family] = f
	}
	return m
}

func kernelMap(ks []KernelStat) map[string]KernelStat {
	m := make(map[string]KernelStat, len(ks))
	for _, k := range ks {
		m[k.Name] = k
	}
	return m
}

func fmtMetric(metric string, v float64) string {
	switch metric {
	case "fraction":
		return pct(v)
	case "tokens_per_sec":
		return fmt.Sprintf("%.0f", v)
	}
	return fmtDur(int64(math.Round(v)))
}

// WriteText writes the comparison for people: verdict, then changed
// metrics (unchanged ones only for modes and the overall figures).
func (d *DiffResult) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Verdict: %s (%d regression(s), %d improvement(s) in step modes and kernel families)\n", d.Verdict, d.Regressions, d.Improvements)
	for _, n := range d.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	t := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(m MetricDiff) {
		name := m.Name
		if m.Kind == "kernel" {
			name = shortName(name, 60)
		}
		change := fmt.Sprintf("%+.1f%%", 100*m.Rel)
		if m.A == 0 && m.B != 0 {
			change = "new"
		}
		fmt.Fprintf(t, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Kind, name, m.Metric, fmtMetric(m.Metric, m.A), fmtMetric(m.Metric, m.B), change, m.Verdict)
	}
	fmt.Fprintln(t, "\n  KIND\tNAME\tMETRIC\tA\tB\tCHANGE\tVERDICT")
	for _, m := range d.Overall {
		row(m)
	}
	for _, m := range d.Modes {
		row(m)
	}
	for _, m := range d.Families {
		if m.Verdict == Regression || m.Verdict == Improvement {
			row(m)
		}
	}
	for _, m := range d.Kernels {
		if m.Verdict == Regression || m.Verdict == Improvement {
			row(m)
		}
	}
	_ = t.Flush()
	for _, k := range d.Added {
		fmt.Fprintf(&b, "  + added   %s (%s, %s, %d calls)\n", shortName(k.Name, 70), k.Family, fmtDur(k.TotalNs), k.Count)
	}
	for _, k := range d.Removed {
		fmt.Fprintf(&b, "  - removed %s (%s, %s, %d calls)\n", shortName(k.Name, 70), k.Family, fmtDur(k.TotalNs), k.Count)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
