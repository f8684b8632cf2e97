package trace

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
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
	Events []refEvent
}

// refEvent is an event decoded by encoding/json (UseNumber): numbers are
// json.Number, strings string.
type refEvent struct {
	Ph   string          `json:"ph"`
	Cat  string          `json:"cat"`
	Name string          `json:"name"`
	Pid  any             `json:"pid"`
	Tid  any             `json:"tid"`
	Ts   any             `json:"ts"`
	Dur  any             `json:"dur"`
	ID   any             `json:"id"`
	S    string          `json:"s"`
	Bp   string          `json:"bp"`
	Args json.RawMessage `json:"args"`
}

type refArgs struct {
	Correlation json.Number `json:"correlation"`
	Device      json.Number `json:"device"`
	SortIndex   json.Number `json:"sort_index"`
}

func (e refEvent) args(t testing.TB) refArgs {
	var a refArgs
	if len(e.Args) > 0 {
		d := json.NewDecoder(bytes.NewReader(e.Args))
		d.UseNumber()
		if err := d.Decode(&a); err != nil {
			t.Fatalf("args %s: %v", e.Args, err)
		}
	}
	return a
}

var (
	refMu    sync.Mutex
	refCache = map[string]*refEntry{}
)

type refEntry struct {
	once sync.Once
	doc  refDoc
	err  error
}

// loadRef decodes a trace with encoding/json, once per fixture path
// (callers must not modify the result).
func loadRef(t testing.TB, path string) refDoc {
	t.Helper()
	if !strings.Contains(path, string(filepath.Separator)+"traces"+string(filepath.Separator)) {
		doc, err := decodeRef(path)
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	refMu.Lock()
	e := refCache[path]
	if e == nil {
		e = &refEntry{}
		refCache[path] = e
	}
	refMu.Unlock()
	e.once.Do(func() { e.doc, e.err = decodeRef(path) })
	if e.err != nil {
		t.Fatal(e.err)
	}
	return e.doc
}

// decodeRef streams the top-level object with the token API so the event
// array is decoded once, straight into typed events.
func decodeRef(path string) (refDoc, error) {
	doc := refDoc{Keys: map[string]json.RawMessage{}}
	f, err := os.Open(path)
	if err != nil {
		return doc, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return doc, err
		}
		r = zr
	}
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return doc, fmt.Errorf("reference decode %s: not an object: %v", path, err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return doc, fmt.Errorf("reference decode %s: %w", path, err)
		}
		key := tok.(string)
		if key == "traceEvents" {
			if err := dec.Decode(&doc.Events); err != nil {
				return doc, fmt.Errorf("reference decode %s events: %w", path, err)
			}
			doc.Keys[key] = nil
			continue
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return doc, fmt.Errorf("reference decode %s key %s: %w", path, key, err)
		}
		doc.Keys[key] = raw
	}
	return doc, nil
}

// refNs converts a JSON number (us) to ns: plain decimals by string
// surgery (integer part, fraction padded to three digits), anything else
// exactly with big.Rat; rounding is half away from zero.
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
	if ip, fp, _ := strings.Cut(s, "."); len(fp) <= 3 && !strings.ContainsAny(s, "eE+") {
		neg := strings.HasPrefix(ip, "-")
		i, err1 := strconv.ParseInt(strings.TrimPrefix(ip, "-"), 10, 64)
		f, err2 := strconv.ParseInt((fp + "000")[:3], 10, 64)
		if err1 == nil && err2 == nil {
			n := i*1000 + f
			if neg {
				n = -n
			}
			return n, true
		}
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
	if !ok || n == "" {
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
		ph, cat, name := e.Ph, e.Cat, e.Name
		res.byPh[ph]++
		res.byCat[cat]++
		if ph != "X" {
			continue
		}
		ts, ok := refNs(t, e.Ts)
		if !ok {
			continue
		}
		dur, _ := refNs(t, e.Dur)
		switch {
		case cat == "kernel" || cat == "gpu_memcpy" || cat == "gpu_memset":
			args := e.args(t)
			a := refAct{ts: ts, end: ts + dur, name: name}
			if d, ok := refInt(args.Device); ok {
				a.device = d
			} else if p, ok := refInt(e.Pid); ok {
				a.device = p
			}
			a.corr, a.hasCorr = refInt(args.Correlation)
			res.acts = append(res.acts, a)
			res.kernelTotal[name] += dur
			res.kernelCount[name]++
			res.actTime += dur
		case strings.HasSuffix(cat, "_runtime") || strings.HasSuffix(cat, "_driver"):
			if c, ok := refInt(e.args(t).Correlation); ok {
				calls = append(calls, call{ts, ts + dur, refStr(e.Pid), refStr(e.Tid), c})
			}
		case cat == "user_annotation":
			if m := refStepRe.FindStringSubmatch(name); m != nil {
				res.stepModes[m[1]]++
				steps = append(steps, step{ts, ts + dur, refStr(e.Pid), refStr(e.Tid)})
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

// skipLargeUnderRace keeps -race runs fast: the two fixtures over 1 MB
// compressed are checked by the same tests without -race.
func skipLargeUnderRace(t *testing.T, path string) {
	t.Helper()
	if st, err := os.Stat(path); raceEnabled && err == nil && st.Size() > 1<<20 {
		t.Skipf("%s is checked without -race (the encoding/json reference is too slow under the race detector)", filepath.Base(path))
	}
}
