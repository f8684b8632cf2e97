package trace

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/sglangd/sglangd/internal/testutil"
)

// eventKey is a canonical form of an event for multiset comparison, with
// the merge's rewrites undone: the label stripped from pid, the rank
// namespace removed from flow ids, the time shift subtracted, the sort
// index value dropped. args are compared byte for byte otherwise.
func eventKey(t testing.TB, e refEvent, label string, ord uint64, shiftNs int64) string {
	t.Helper()
	pid := refStr(e.Pid)
	if label != "" {
		if !strings.HasPrefix(pid, label+" ") {
			t.Fatalf("pid %q lacks label %q", pid, label)
		}
		pid = strings.TrimPrefix(pid, label+" ")
	}
	id := refStr(e.ID)
	if n, ok := e.ID.(json.Number); ok && label != "" && ord > 0 && strings.Contains("stfben", e.Ph) {
		v, _ := strconv.ParseUint(n.String(), 10, 64)
		id = strconv.FormatUint(v-ord<<flowShift, 10)
	}
	ts := refStr(e.Ts)
	if ns, ok := refNs(t, e.Ts); ok {
		if label != "" {
			ns -= shiftNs
		}
		ts = strconv.FormatInt(ns, 10)
	}
	dur := refStr(e.Dur)
	if ns, ok := refNs(t, e.Dur); ok {
		dur = strconv.FormatInt(ns, 10)
	}
	args := string(e.Args)
	if e.Name == "process_sort_index" {
		args = regexp.MustCompile(`"sort_index":\s*-?\d+`).ReplaceAllString(args, "")
	}
	return strings.Join([]string{e.Ph, e.Cat, e.Name, pid, refStr(e.Tid), ts, dur, id, e.S, e.Bp, args}, "|")
}

func TestMerge_KeepsEveryEventOnceAndOrdersRanks(t *testing.T) {
	fx := filepath.Join(testutil.FixturesDir(t), "traces")
	cases := []struct {
		name    string
		dir     string
		profile string
		labels  []string
	}{
		{"h200 TP=2", filepath.Join(fx, "h200"), "1764201700.000002", []string{"[TP00]", "[TP01]"}},
		{"tracelens unnamed ranks", filepath.Join(fx, "tracelens"), "", []string{"[Unknown]", "[Unknown#1]"}},
		{"hta sampled pair", filepath.Join(fx, "hta"), "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files, err := Discover(tc.dir, DiscoverOptions{Profile: tc.profile})
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "tracelens unnamed ranks" {
				// Two files with different time bases and no rank names
				// (the third, 60k events, only slows the race detector).
				files = slices.DeleteFunc(files, func(f RankFile) bool { return strings.Contains(f.Path, "prefilldecode") })
			}
			if tc.name == "hta sampled pair" {
				// rank0.json.gz and sampled_rank-0 both claim rank 0; keep the pair.
				var pair []RankFile
				for _, f := range files {
					if strings.HasPrefix(filepath.Base(f.Path), "sampled_rank-") {
						pair = append(pair, f)
					}
				}
				files = pair
				tc.labels = []string{"[TP00]", "[TP01]"}
			}
			out := filepath.Join(t.TempDir(), "merged.trace.json.gz")
			res, err := MergeFiles(context.Background(), files, out, MergeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			merged := loadRef(t, out)
			want := map[string]int{}
			var inputs int64
			for i, f := range files {
				doc := loadRef(t, f.Path)
				inputs += int64(len(doc.Events))
				if res.Files[i].Events != int64(len(doc.Events)) {
					t.Errorf("%s: events = %d, want %d", f.Path, res.Files[i].Events, len(doc.Events))
				}
				for _, e := range doc.Events {
					want[eventKey(t, e, "", 0, 0)+"@"+tc.labels[i]]++
				}
			}
			if res.InputEvents != inputs || int64(len(merged.Events)) != inputs+int64(res.AddedEvents) {
				t.Fatalf("output events = %d (added %d), inputs %d", len(merged.Events), res.AddedEvents, inputs)
			}
			added := 0
			lastOrd := -1
			for _, e := range merged.Events {
				pid := refStr(e.Pid)
				ord := -1
				for i, l := range tc.labels {
					if strings.HasPrefix(pid, l+" ") {
						ord = i
					}
				}
				if ord < 0 {
					t.Fatalf("pid %q has no rank label", pid)
				}
				if e.Name == "process_sort_index" {
					si, _ := refInt(e.args(t).SortIndex)
					if si>>sortShift != int64(ord) {
						t.Errorf("%s sort_index %d is outside rank %d's band", pid, si, ord)
					}
				}
				key := eventKey(t, e, tc.labels[ord], uint64(ord), res.Files[ord].ShiftNs) + "@" + tc.labels[ord]
				if want[key] > 0 {
					want[key]--
					// Events are written rank by rank.
					if ord < lastOrd {
						t.Fatalf("event of rank %d after rank %d", ord, lastOrd)
					}
					lastOrd = ord
					continue
				}
				if e.Ph != "M" || e.Name != "process_sort_index" {
					t.Fatalf("unexpected output event %s", key)
				}
				added++
			}
			if added != res.AddedEvents {
				t.Errorf("added metadata = %d, want %d", added, res.AddedEvents)
			}
			for k, n := range want {
				if n != 0 {
					t.Fatalf("input event missing from output (%d times): %.300s", n, k)
				}
			}
			if _, ok := merged.Keys["sglangdMerge"]; !ok {
				t.Error("no sglangdMerge key")
			}
		})
	}
}

// writeTrace writes a small gzip trace.
func writeTrace(t testing.TB, path string, base int64, events ...string) {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	head := `{"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "GPU"}], `
	if base != 0 {
		head += fmt.Sprintf(`"baseTimeNanoseconds": %d, `, base)
	}
	fmt.Fprintf(zw, "%s\"traceEvents\": [\n%s\n], \"traceName\": %q}", head, strings.Join(events, ",\n"), path)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMerge_AlignsTimeBasesAndNamespacesFlows(t *testing.T) {
	dir := t.TempDir()
	evs := []string{
		`{"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 7, "tid": 7, "ts": 100.5, "dur": 2, "args": {"correlation": 15}}`,
		`{"ph": "s", "id": 15, "pid": 7, "tid": 7, "ts": 100.5, "cat": "ac2g", "name": "ac2g"}`,
		`{"ph": "f", "id": 15, "pid": 0, "tid": 7, "ts": 103.001, "cat": "ac2g", "name": "ac2g", "bp": "e"}`,
		`{"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 103.001, "dur": 1.5, "args": {"correlation": 15, "device": 0}}`,
		`{"name": "process_sort_index", "ph": "M", "ts": 0, "pid": 0, "tid": 0, "args": {"sort_index": 16777216}}`,
	}
	const base0, base1 = int64(1_790_857_026_000_000_000), int64(1_790_857_027_000_000_000) // 1 s apart
	writeTrace(t, filepath.Join(dir, "prof-1-TP-0.trace.json.gz"), base0, evs...)
	writeTrace(t, filepath.Join(dir, "prof-1-TP-1.trace.json.gz"), base1, evs...)
	out := filepath.Join(dir, "out.json")
	res, err := MergeDir(context.Background(), dir, out, MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.BaseTimeNanoseconds != base0 || res.Files[1].ShiftNs != 1e9 || res.Files[0].ShiftNs != 0 {
		t.Fatalf("result = %+v", res)
	}
	doc := loadRef(t, out)
	var b int64
	_ = json.Unmarshal(doc.Keys["baseTimeNanoseconds"], &b)
	if b != base0 {
		t.Errorf("output base = %d", b)
	}
	flows := map[string][]string{}
	for _, e := range doc.Events {
		pid := refStr(e.Pid)
		if e.Name == "k" {
			ts := refStr(e.Ts)
			want := "103.001"
			if strings.HasPrefix(pid, "[TP01]") {
				want = "1000103.001"
			}
			if ts != want {
				t.Errorf("%s kernel ts = %s, want %s", pid, ts, want)
			}
		}
		if ph := e.Ph; ph == "s" || ph == "f" {
			flows[refStr(e.ID)] = append(flows[refStr(e.ID)], pid[:6]+ph)
		}
	}
	// Each rank keeps its s/f pair under its own id.
	if len(flows) != 2 || len(flows["15"]) != 2 || len(flows[strconv.FormatUint(15+1<<flowShift, 10)]) != 2 {
		t.Errorf("flows = %v", flows)
	}
	// The output file is the only new file, complete.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("directory holds %d entries, want the 2 inputs and the output", len(entries))
	}
}

func TestMerge_CorruptInputFailsWithoutOutput(t *testing.T) {
	dir := t.TempDir()
	writeTrace(t, filepath.Join(dir, "p-TP-0.trace.json.gz"), 1, `{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 1, "dur": 1}`)
	// Rank 1 is cut mid-event.
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(`{"traceEvents": [{"ph": "X", "name": "a", "pid": 1, "ti`))
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "p-TP-1.trace.json.gz"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "merged-p.trace.json.gz")
	_, err := MergeDir(context.Background(), dir, out, MergeOptions{})
	if !errors.Is(err, ErrTruncated) || !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "p-TP-1") {
		t.Fatalf("err = %v, want a truncation error naming the file", err)
	}
	if _, serr := os.Stat(out); !os.IsNotExist(serr) {
		t.Errorf("output exists after a failed merge")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temp files left behind: %d entries", len(entries))
	}
}

func TestMerge_Cancelled(t *testing.T) {
	dir := filepath.Join(testutil.FixturesDir(t), "traces", "h200")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := MergeDir(ctx, dir, filepath.Join(t.TempDir(), "m.json.gz"), MergeOptions{Profile: "1764201700.000002"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// Some writers put baseTimeNanoseconds after traceEvents (the HTA
// nccl_data fixture does); merge and analysis must still use it.
func TestBaseTimeAfterEvents(t *testing.T) {
	dir := t.TempDir()
	ev := `{"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 10, "dur": 5, "args": {"device": 0}}`
	const base = int64(1_790_857_026_000_000_000)
	writeTrace(t, filepath.Join(dir, "p-TP-0.trace.json.gz"), base, ev)
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	fmt.Fprintf(zw, `{"traceEvents": [%s], "baseTimeNanoseconds": %d}`, ev, base+2000)
	zw.Close()
	if err := os.WriteFile(filepath.Join(dir, "p-TP-1.trace.json.gz"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := MergeDir(context.Background(), dir, filepath.Join(dir, "m.json"), MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.BaseTimeNanoseconds != base || res.Files[1].ShiftNs != 2000 {
		t.Errorf("merge: base %d, shifts %d/%d", res.BaseTimeNanoseconds, res.Files[0].ShiftNs, res.Files[1].ShiftNs)
	}
	s, err := AnalyzeFiles(context.Background(), []RankFile{{Path: filepath.Join(dir, "p-TP-1.trace.json.gz")}}, AnalyzeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.OriginUnixNs != base+2000+10_000 || hasWarning(s, WarnNoBaseTime) {
		t.Errorf("analysis origin = %d, want %d; warnings %+v", s.OriginUnixNs, base+2000+10_000, s.Warnings)
	}
}
