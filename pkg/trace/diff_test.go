package trace

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/sglangd/sglangd/internal/testutil"
)

var (
	h200Once     sync.Once
	h200TP1      *Summary
	h200TP2      *Summary
	h200Err      error
	h200Fixtures = [2]string{"h200/1764201600.000001-TP-0.trace.json.gz", "h200/1764201700.000002-TP-0.trace.json.gz"}
)

// h200Summaries analyses the TP=1 profile and rank 0 of the TP=2 one.
func h200Summaries(t *testing.T) (*Summary, *Summary) {
	t.Helper()
	p1 := testutil.TraceFixture(t, h200Fixtures[0])
	p2 := testutil.TraceFixture(t, h200Fixtures[1])
	h200Once.Do(func() {
		h200TP1, h200Err = AnalyzePath(context.Background(), p1, AnalyzeOptions{})
		if h200Err == nil {
			h200TP2, h200Err = AnalyzePath(context.Background(), p2, AnalyzeOptions{})
		}
	})
	if h200Err != nil {
		t.Fatal(h200Err)
	}
	return h200TP1, h200TP2
}

func clone(t *testing.T, s *Summary) Summary {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var c Summary
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func find(ms []MetricDiff, kind, name, metric string) *MetricDiff {
	for i := range ms {
		if ms[i].Kind == kind && ms[i].Name == name && ms[i].Metric == metric {
			return &ms[i]
		}
	}
	return nil
}

func TestDiff(t *testing.T) {
	a, b := h200Summaries(t)
	opts := DefaultDiffOptions()

	same := Diff(*a, clone(t, a), opts)
	if same.Verdict != Unchanged || same.Regressions != 0 || len(same.Added)+len(same.Removed) != 0 {
		t.Fatalf("identical summaries: %+v", same)
	}

	// Decode 20% slower with little noise: a regression; 1% slower: noise.
	for _, tc := range []struct {
		factor float64
		want   Verdict
	}{{1.2, Regression}, {0.8, Improvement}, {1.01, Unchanged}} {
		c := clone(t, a)
		for i := range c.Modes {
			if c.Modes[i].Mode == "DECODE" {
				c.Modes[i].MeanNs = int64(float64(c.Modes[i].MeanNs) * tc.factor)
				c.Modes[i].P50Ns = int64(float64(c.Modes[i].P50Ns) * tc.factor)
				c.Modes[i].TokensPerSec /= tc.factor
			}
		}
		d := Diff(*a, c, opts)
		m := find(d.Modes, "mode", "DECODE", "mean_wall_ns")
		if m == nil || m.Verdict != tc.want || d.Verdict != tc.want {
			t.Errorf("factor %.2f: verdict %s, decode %+v, want %s", tc.factor, d.Verdict, m, tc.want)
		}
	}

	// A big relative change inside the noise band is not a regression.
	noisy := clone(t, a)
	quiet := clone(t, a)
	for i := range noisy.Modes {
		if noisy.Modes[i].Mode == "DECODE" {
			noisy.Modes[i].StddevNs = noisy.Modes[i].MeanNs * 3
			quiet.Modes[i].StddevNs = noisy.Modes[i].StddevNs
			quiet.Modes[i].MeanNs = noisy.Modes[i].MeanNs * 13 / 10
		}
	}
	if m := find(Diff(noisy, quiet, opts).Modes, "mode", "DECODE", "mean_wall_ns"); m == nil || m.Verdict != Unchanged {
		t.Errorf("noisy decode: %+v", m)
	}

	// Too few samples: no verdict.
	few := clone(t, a)
	if m := find(Diff(few, clone(t, a), DiffOptions{RelThreshold: 0.05, MinCount: 100, NoiseSigmas: 2}).Modes, "mode", "EXTEND", "mean_wall_ns"); m == nil || m.Verdict != Insufficient {
		t.Errorf("few steps: %+v", m)
	}

	// TP=1 -> TP=2 adds the all-reduce kernel and communication time.
	d := Diff(*a, *b, opts)
	added := false
	for _, k := range d.Added {
		added = added || strings.HasPrefix(k.Name, "ncclDevKernel_AllReduce")
	}
	if !added {
		t.Errorf("added = %+v, want the NCCL all-reduce", d.Added)
	}
	if m := find(d.Families, "family", FamilyComm, "ns_per_rank_step"); m == nil || m.Verdict != Regression || m.A != 0 {
		t.Errorf("communication family: %+v", m)
	}
	var sb strings.Builder
	if err := d.WriteText(&sb); err != nil || !strings.Contains(sb.String(), "Verdict: regression") || !strings.Contains(sb.String(), "+ added") {
		t.Errorf("text:\n%s", sb.String())
	}
	if _, err := json.Marshal(d); err != nil {
		t.Fatal(err)
	}
}
