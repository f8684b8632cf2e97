package trace

import (
	"cmp"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sglangd/sglangd/internal/testutil"
)

// TestFixtures_ReaderMatchesReference checks the streaming reader against
// encoding/json on every fixture: event counts by phase and category and
// the top-level keys.
func TestFixtures_ReaderMatchesReference(t *testing.T) {
	for _, rel := range allFixtures(t) {
		t.Run(rel, func(t *testing.T) {
			t.Parallel()
			path := testutil.TraceFixture(t, rel)
			skipLargeUnderRace(t, path)
			ref := computeRef(t, loadRef(t, path))
			r, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			byPh, byCat := map[string]int64{}, map[string]int64{}
			var n int64
			for {
				ev, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("event %d: %v", n, err)
				}
				n++
				if ev.Ph != 0 {
					byPh[string(ev.Ph)]++
				} else {
					byPh[""]++
				}
				byCat[string(ev.Cat)]++
			}
			if n != ref.total {
				t.Errorf("events = %d, want %d", n, ref.total)
			}
			if !mapsEqual(byPh, ref.byPh) {
				t.Errorf("by ph = %v, want %v", byPh, ref.byPh)
			}
			if !mapsEqual(byCat, ref.byCat) {
				t.Errorf("by cat = %v, want %v", byCat, ref.byCat)
			}
			h := r.Header()
			var keys []string
			for _, k := range h.Keys {
				keys = append(keys, k.Name)
			}
			doc := loadRef(t, path)
			var want []string
			for k := range doc.Keys {
				if k != "traceEvents" {
					want = append(want, k)
				}
			}
			slices.Sort(keys)
			slices.Sort(want)
			if !slices.Equal(keys, want) {
				t.Errorf("header keys = %v, want %v", keys, want)
			}
			if h.BaseTimeNanoseconds != ref.base {
				t.Errorf("base = %d, want %d", h.BaseTimeNanoseconds, ref.base)
			}
		})
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestFixtures_AnalysisMatchesReference checks the analysis of each fixture
// against the reference: busy-time union and span per device, kernel
// totals, top kernels, step counts and the kernels joined to each step.
func TestFixtures_AnalysisMatchesReference(t *testing.T) {
	for _, rel := range allFixtures(t) {
		t.Run(rel, func(t *testing.T) {
			t.Parallel()
			path := testutil.TraceFixture(t, rel)
			skipLargeUnderRace(t, path)
			ref := computeRef(t, loadRef(t, path))
			s, err := AnalyzeFiles(context.Background(), []RankFile{{Path: path}}, AnalyzeOptions{MaxKernels: 10000})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Ranks) != 1 {
				t.Fatalf("ranks = %d, want 1", len(s.Ranks))
			}
			rs := s.Ranks[0]
			if rs.Events.Total != ref.total || !mapsEqual(rs.Events.ByCat, ref.byCat) {
				t.Errorf("events = %d %v, want %d %v", rs.Events.Total, rs.Events.ByCat, ref.total, ref.byCat)
			}
			if len(rs.Devices) != len(ref.busy) {
				t.Fatalf("devices = %d, want %d", len(rs.Devices), len(ref.busy))
			}
			var busySum int64
			for _, d := range rs.Devices {
				if d.BusyNs != ref.busy[int64(d.Device)] || d.SpanNs != ref.span[int64(d.Device)] {
					t.Errorf("device %d busy/span = %d/%d, want %d/%d", d.Device, d.BusyNs, d.SpanNs, ref.busy[int64(d.Device)], ref.span[int64(d.Device)])
				}
				busySum += d.BusyNs
			}
			if rs.GPUBusyNs != busySum || s.GPUBusyNs != busySum {
				t.Errorf("GPU busy = %d (session %d), want %d", rs.GPUBusyNs, s.GPUBusyNs, busySum)
			}
			if s.KernelTimeNs != ref.actTime {
				t.Errorf("kernel time = %d, want %d", s.KernelTimeNs, ref.actTime)
			}
			// Every kernel name with its count and total, and the top-10 order.
			if len(s.Kernels) != len(ref.kernelTotal) {
				t.Errorf("kernel names = %d, want %d", len(s.Kernels), len(ref.kernelTotal))
			}
			for _, k := range s.Kernels {
				if k.TotalNs != ref.kernelTotal[k.Name] || k.Count != ref.kernelCount[k.Name] {
					t.Errorf("kernel %.60s: count/total = %d/%d, want %d/%d", k.Name, k.Count, k.TotalNs, ref.kernelCount[k.Name], ref.kernelTotal[k.Name])
				}
			}
			type kt struct {
				name  string
				total int64
			}
			var want []kt
			for n, v := range ref.kernelTotal {
				want = append(want, kt{n, v})
			}
			slices.SortFunc(want, func(a, b kt) int { return cmp.Or(cmp.Compare(b.total, a.total), cmp.Compare(a.name, b.name)) })
			for i := 0; i < min(10, len(want)); i++ {
				if s.Kernels[i].Name != want[i].name {
					t.Errorf("top kernel %d = %.60s, want %.60s", i, s.Kernels[i].Name, want[i].name)
				}
			}
			var famTotal int64
			for _, f := range s.Families {
				famTotal += f.TotalNs
			}
			if famTotal != ref.actTime {
				t.Errorf("family total = %d, want %d", famTotal, ref.actTime)
			}
			// Steps.
			modes := map[string]int{}
			for _, st := range rs.Steps {
				modes[st.Mode]++
			}
			if len(modes) != len(ref.stepModes) {
				t.Errorf("step modes = %v, want %v", modes, ref.stepModes)
			}
			for m, n := range ref.stepModes {
				if modes[m] != n {
					t.Errorf("steps of %s = %d, want %d", m, modes[m], n)
				}
			}
			for i, st := range rs.Steps {
				if st.Kernels != ref.stepKernels[i] {
					t.Errorf("step %d (%s) kernels = %d, want %d", i, st.Mode, st.Kernels, ref.stepKernels[i])
				}
			}
			// The summary is JSON-serialisable and round-trips.
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var back Summary
			if err := json.Unmarshal(b, &back); err != nil || back.GPUBusyNs != s.GPUBusyNs {
				t.Fatalf("summary JSON round trip: %v", err)
			}
		})
	}
}

// TestAnalyze_H200StragglerAndGraphs checks the LLM-serving figures of the
// H200 TP=2 fixture: rank 1 waits ~217 ms in the first all-reduce for
// rank 0, decode steps are CUDA-graph replays of 167 nodes, prefill is
// eager.
func TestAnalyze_H200StragglerAndGraphs(t *testing.T) {
	dir := filepath.Join(testutil.FixturesDir(t), "traces", "h200")
	s, err := AnalyzePath(context.Background(), dir, AnalyzeOptions{Profile: "1764201700.000002"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Ranks) != 2 || s.Ranks[0].Label != "[TP00]" || s.Ranks[1].Label != "[TP01]" {
		t.Fatalf("ranks = %+v", s.Ranks)
	}
	// Independent: first NCCL kernel per rank in start order.
	firstNCCL := func(rel string) int64 {
		doc := loadRef(t, testutil.TraceFixture(t, rel))
		best, bestTs := int64(0), int64(-1)
		for _, e := range doc.Events {
			if e.Cat != "kernel" || !strings.HasPrefix(e.Name, "nccl") {
				continue
			}
			ts, _ := refNs(t, e.Ts)
			dur, _ := refNs(t, e.Dur)
			if bestTs < 0 || ts < bestTs {
				best, bestTs = dur, ts
			}
		}
		return best
	}
	d0 := firstNCCL("h200/1764201700.000002-TP-0.trace.json.gz")
	d1 := firstNCCL("h200/1764201700.000002-TP-1.trace.json.gz")
	im := s.Imbalance
	if im == nil || im.MaxWait == nil {
		t.Fatalf("no imbalance: %+v", im)
	}
	if im.MaxWait.Label != "[TP01]" || im.MaxWait.Waited != "[TP00]" || im.MaxWait.Ordinal != 0 || im.MaxWait.WaitNs != d1-d0 {
		t.Errorf("max wait = %+v, want [TP01] waiting %d ns for [TP00] in collective 0", im.MaxWait, d1-d0)
	}
	if im.MaxWait.WaitNs < 210e6 || im.MaxWait.WaitNs > 220e6 {
		t.Errorf("max wait = %d ns, want ~217 ms", im.MaxWait.WaitNs)
	}
	if im.Straggler != "[TP00]" || !im.SameTimeBase || !im.Aligned || im.Collectives != 1056 {
		t.Errorf("imbalance = %+v", im)
	}
	if !hasWarning(s, WarnStraggler) {
		t.Errorf("no straggler warning: %+v", s.Warnings)
	}
	var decode, extend *ModeStat
	for i := range s.Modes {
		switch s.Modes[i].Mode {
		case "DECODE":
			decode = &s.Modes[i]
		case "EXTEND":
			extend = &s.Modes[i]
		}
	}
	if decode == nil || extend == nil {
		t.Fatalf("modes = %+v", s.Modes)
	}
	if decode.Steps != 64 || decode.GraphSteps != 64 || decode.Tokens != 64*8 {
		t.Errorf("decode = %+v", decode)
	}
	if extend.Steps != 2 || extend.GraphSteps != 0 || extend.Tokens != 2*4096 {
		t.Errorf("extend = %+v", extend)
	}
	// Decode steps queue behind each other on the GPU: the wall is the GPU
	// time of one graph replay (~0.8 ms), not launch-to-completion.
	if decode.P50Ns < 500e3 || decode.P50Ns > 1.2e6 {
		t.Errorf("decode p50 = %d ns, want ~0.8 ms", decode.P50Ns)
	}
	for _, st := range s.Ranks[0].Steps {
		if st.Mode == "DECODE" && st.Kernels != 167 {
			t.Errorf("decode step %d kernels = %d, want the graph's 167 nodes", st.Index, st.Kernels)
		}
	}
	if s.Graph.Launches != 128 || s.Comm.WaitNs <= 0 {
		t.Errorf("graph = %+v comm = %+v", s.Graph, s.Comm)
	}
}

func hasWarning(s *Summary, code string) bool {
	for _, w := range s.Warnings {
		if w.Code == code {
			return true
		}
	}
	return false
}

// TestAnalyze_MergedTraceSplitsRanks analyses a merged trace: the labels
// route events back to their ranks, giving the figures of the per-rank
// files.
func TestAnalyze_MergedTraceSplitsRanks(t *testing.T) {
	dir := filepath.Join(testutil.FixturesDir(t), "traces", "h200")
	out := filepath.Join(t.TempDir(), "merged.trace.json.gz")
	if _, err := MergeDir(context.Background(), dir, out, MergeOptions{Profile: "1764201700.000002"}); err != nil {
		t.Fatal(err)
	}
	merged, err := AnalyzePath(context.Background(), out, AnalyzeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := AnalyzePath(context.Background(), dir, AnalyzeOptions{Profile: "1764201700.000002"})
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Ranks) != 2 {
		t.Fatalf("merged ranks = %d", len(merged.Ranks))
	}
	for i := range direct.Ranks {
		a, b := direct.Ranks[i], merged.Ranks[i]
		if a.Label != b.Label || a.GPUBusyNs != b.GPUBusyNs || len(a.Steps) != len(b.Steps) || a.KernelTimeNs != b.KernelTimeNs {
			t.Errorf("rank %d: merged %s busy %d steps %d, direct %s busy %d steps %d", i, b.Label, b.GPUBusyNs, len(b.Steps), a.Label, a.GPUBusyNs, len(a.Steps))
		}
	}
	if merged.Imbalance == nil || merged.Imbalance.Straggler != "[TP00]" {
		t.Errorf("merged imbalance = %+v", merged.Imbalance)
	}
}
