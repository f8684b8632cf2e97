package trace

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/sglangd/sglangd/internal/testutil"
)

// This file is the independent reference the acceptance tests compare
// against: it decodes fixtures with encoding/json into maps and recomputes
// counts, busy unions, kernel totals and step joins without any of the
// package's parsing or analysis code.

type refDoc struct {
	Keys   map[string]json.RawMessage
	Events []map[string]any
}

var (
	refMu    sync.Mutex
	refCache = map[string]refDoc{}
)

// loadRef decodes a trace with encoding/json, cached per path (callers
// must not modify the result).
func loadRef(t testing.TB, path string) refDoc {
	t.Helper()
	refMu.Lock()
	defer refMu.Unlock()
	if d, ok := refCache[path]; ok {
		return d
	}
	d := loadRefUncached(t, path)
	if strings.Contains(path, string(filepath.Separator)+"traces"+string(filepath.Separator)) {
		refCache[path] = d
	}
	return d
}

func loadRefUncached(t testing.TB, path string) refDoc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		t.Fatalf("reference decode %s: %v", path, err)
	}
	doc := refDoc{Keys: raw}
	d2 := json.NewDecoder(strings.NewReader(string(raw["traceEvents"])))
	d2.UseNumber()
	if err := d2.Decode(&doc.Events); err != nil {
		t.Fatalf("reference decode traceEvents of %s: %v", path, err)
	}
	return doc
}

// refNs converts a JSON number (us) to ns exactly with big.Rat, rounding
// half away from zero.
func refNs(t testing.TB, v any) (int64, bool) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		return 0, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("bad number %q", s)
	}
	r.Mul(r, big.NewRat(1000, 1))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	rem := new(big.Rat).Sub(r, new(big.Rat).SetInt(n))
	if rem.Cmp(big.NewRat(1, 2)) >= 0 {
		n.Add(n, big.NewInt(1))
	} else if rem.Cmp(big.NewRat(-1, 2)) <= 0 {
		n.Sub(n, big.NewInt(1))
	}
	return n.Int64(), true
}

func refStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func refInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

type refAct struct {
	ts, end int64
	device  int64
	name    string
	corr    int64
	hasCorr bool
}

type refResult struct {
	total       int64
	byPh, byCat map[string]int64
	acts        []refAct
	busy, span  map[int64]int64
	kernelTotal map[string]int64
	kernelCount map[string]int64
	actTime     int64
	stepModes   map[string]int
	stepKernels []int // per step, in start order
	base        int64
}

var refStepRe = regexp.MustCompile(`^step\[([A-Za-z_0-9]+)`)

func computeRef(t testing.TB, doc refDoc) refResult {
	t.Helper()
	res := refResult{byPh: map[string]int64{}, byCat: map[string]int64{}, busy: map[int64]int64{}, span: map[int64]int64{},
		kernelTotal: map[string]int64{}, kernelCount: map[string]int64{}, stepModes: map[string]int{}}
	if b, ok := doc.Keys["baseTimeNanoseconds"]; ok {
		_ = json.Unmarshal(b, &res.base)
	}
	type call struct {
		ts, end  int64
		pid, tid string
		corr     int64
	}
	type step struct {
		ts, end  int64
		pid, tid string
	}
	var calls []call
	var steps []step
	for _, e := range doc.Events {
		res.total++
		ph := refStr(e["ph"])
		cat := refStr(e["cat"])
		res.byPh[ph]++
		res.byCat[cat]++
		if ph != "X" {
			continue
		}
		ts, ok := refNs(t, e["ts"])
		if !ok {
			continue
		}
		dur, _ := refNs(t, e["dur"])
		args, _ := e["args"].(map[string]any)
		name := refStr(e["name"])
		switch {
		case cat == "kernel" || cat == "gpu_memcpy" || cat == "gpu_memset":
			a := refAct{ts: ts, end: ts + dur, name: name}
			if d, ok := refInt(args["device"]); ok {
				a.device = d
			} else if p, ok := refInt(e["pid"]); ok {
				a.device = p
			}
			a.corr, a.hasCorr = refInt(args["correlation"])
			res.acts = append(res.acts, a)
			res.kernelTotal[name] += dur
			res.kernelCount[name]++
			res.actTime += dur
		case strings.HasSuffix(cat, "_runtime") || strings.HasSuffix(cat, "_driver"):
			if c, ok := refInt(args["correlation"]); ok {
				calls = append(calls, call{ts, ts + dur, refStr(e["pid"]), refStr(e["tid"]), c})
			}
		case cat == "user_annotation":
			if m := refStepRe.FindStringSubmatch(name); m != nil {
				res.stepModes[m[1]]++
				steps = append(steps, step{ts, ts + dur, refStr(e["pid"]), refStr(e["tid"])})
			}
		}
	}
	// Busy = union per device.
	byDev := map[int64][][2]int64{}
	for _, a := range res.acts {
		byDev[a.device] = append(byDev[a.device], [2]int64{a.ts, a.end})
	}
	for d, iv := range byDev {
		sort.Slice(iv, func(i, j int) bool { return iv[i][0] < iv[j][0] })
		var busy int64
		cs, ce := iv[0][0], iv[0][1]
		last := ce
		for _, x := range iv[1:] {
			last = max(last, x[1])
			if x[0] > ce {
				busy += ce - cs
				cs, ce = x[0], x[1]
				continue
			}
			ce = max(ce, x[1])
		}
		busy += ce - cs
		res.busy[d] = busy
		res.span[d] = last - iv[0][0]
	}
	// Step join: launch calls inside the step on the same thread (else the
	// same process), correlation -> GPU activities not taken by an earlier
	// step.
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].ts < steps[j].ts })
	byCorr := map[int64][]int{}
	for i, a := range res.acts {
		if a.hasCorr {
			byCorr[a.corr] = append(byCorr[a.corr], i)
		}
	}
	taken := make([]bool, len(res.acts))
	for _, st := range steps {
		count := func(sameThread bool) int {
			n := 0
			for _, c := range calls {
				if c.ts < st.ts || c.ts > st.end || c.pid != st.pid || (sameThread && c.tid != st.tid) {
					continue
				}
				for _, ai := range byCorr[c.corr] {
					if !taken[ai] {
						taken[ai] = true
						n++
					}
				}
			}
			return n
		}
		n := count(true)
		if n == 0 {
			n = count(false)
		}
		res.stepKernels = append(res.stepKernels, n)
	}
	return res
}

// allFixtures lists every trace fixture, relative to fixtures/traces.
func allFixtures(t testing.TB) []string {
	t.Helper()
	root := filepath.Join(testutil.FixturesDir(t), "traces")
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".json.gz") {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	if len(out) < 10 {
		t.Fatalf("expected the 10 shared trace fixtures, found %d", len(out))
	}
	return out
}
