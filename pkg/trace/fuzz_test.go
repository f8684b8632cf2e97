package trace

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/sglangd/sglangd/internal/testutil"
)

// fuzzSeeds builds the seed corpus in code: a small document cut from a
// real fixture, its truncations and mutations, and its gzip form.
func fuzzSeeds(t testing.TB) [][]byte {
	seeds := [][]byte{
		[]byte(`{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 1.5, "dur": 2, "args": {"correlation": 1, "device": 0}}]}`),
		[]byte(`[{"ph": "M", "name": "process_sort_index", "pid": "[TP00] 1", "tid": 0, "args": {"sort_index": 3}}]`),
		[]byte(`{"baseTimeNanoseconds": 1, "traceEvents": [{"ph": "X", "cat": "user_annotation", "name": "step[DECODE bs=8]", "pid": 1, "tid": 1, "ts": 0, "dur": 10},` +
			`{"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "pid": 1, "tid": 1, "ts": 1, "dur": 1, "args": {"correlation": 5}},` +
			`{"ph": "X", "cat": "kernel", "name": "nccl", "pid": 0, "tid": 7, "ts": 3, "dur": 2, "args": {"correlation": 5}}], "traceName": "x"}`),
	}
	dir := os.Getenv(testutil.FixturesEnv)
	if dir == "" {
		dir = filepath.Join(testutil.RepoRoot(t), "..", "shared", "fixtures")
	}
	if f, err := os.Open(filepath.Join(dir, "traces", "tracelens", "sglang_Qwen3-8B_decode.json.gz")); err == nil {
		defer f.Close()
		var doc struct {
			TraceEvents []json.RawMessage `json:"traceEvents"`
		}
		if zr, err := gzip.NewReader(f); err == nil && json.NewDecoder(zr).Decode(&doc) == nil && len(doc.TraceEvents) > 40 {
			small := []byte(`{"schemaVersion": 1, "baseTimeNanoseconds": 1775078550000000000, "traceEvents": [`)
			for i, e := range doc.TraceEvents[:40] {
				if i > 0 {
					small = append(small, ',')
				}
				small = append(small, e...)
			}
			small = append(small, "]}"...)
			seeds = append(seeds, small)
			for _, cut := range []int{1, len(small) / 4, len(small) / 2, len(small) - 1} {
				seeds = append(seeds, bytes.Clone(small[:cut]))
			}
			for i, b := range []byte{'"', '}', ']', '{', '\\', 0, '9'} {
				m := bytes.Clone(small)
				m[(i+1)*len(m)/9] = b
				seeds = append(seeds, m)
			}
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(small)
			zw.Close()
			seeds = append(seeds, z.Bytes(), z.Bytes()[:z.Len()/2])
		}
	}
	return seeds
}

// FuzzReader feeds arbitrary bytes to the reader and, when they read as a
// complete trace, to the analysis: nothing may panic, a truncation is never
// reported as complete, and valid trace JSON is never rejected.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		defer r.Close()
		complete := false
		for {
			ev, err := r.Next()
			if err != nil {
				complete = errors.Is(err, io.EOF)
				var se *SyntaxError
				if !complete && errors.As(err, &se) && se.Offset < 0 {
					t.Fatalf("negative offset in %v", err)
				}
				break
			}
			_ = ev.Name()
			_ = ev.Pid.String()
		}
		plain := !(len(data) > 1 && data[0] == 0x1f && data[1] == 0x8b)
		if plain && json.Valid(data) && traceShaped(data) && !complete {
			t.Fatalf("valid trace rejected: %s", data)
		}
		if plain && complete && !json.Valid(bytes.TrimPrefix(data, []byte("\ufeff"))) && truncatedJSON(data) {
			t.Fatalf("truncated input reported complete: %q", data)
		}
		if !complete {
			return
		}
		cols, err := collect(context.Background(), mustReader(t, data), RankFile{Path: "fuzz"}, "[Unknown]")
		if err != nil {
			t.Fatalf("second read failed: %v", err)
		}
		var rs []*rankResult
		for _, c := range cols {
			rs = append(rs, c.finalize(5))
		}
		s := assemble(rs, AnalyzeOptions{TopKernels: 5, MaxKernels: 10, TimelineBuckets: 8})
		if _, err := json.Marshal(s); err != nil {
			t.Fatalf("summary does not marshal: %v", err)
		}
	})
}

func mustReader(t *testing.T, data []byte) *Reader {
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// traceShaped reports whether valid JSON is an object whose traceEvents
// (if any) is an array of objects, or an array of objects.
func traceShaped(data []byte) bool {
	var arr []map[string]json.RawMessage
	if json.Unmarshal(data, &arr) == nil {
		return true
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return false
	}
	if ev, ok := obj["traceEvents"]; ok {
		return json.Unmarshal(ev, &arr) == nil && bytes.Count(data, []byte(`"traceEvents"`)) == 1
	}
	return true
}

// truncatedJSON reports whether data is a strict prefix of some JSON value:
// its brackets and strings are still open at the end.
func truncatedJSON(data []byte) bool {
	depth, inStr, esc := 0, false, false
	for _, c := range data {
		switch {
		case inStr && esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case inStr && c == '"':
			inStr = false
		case inStr:
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		}
	}
	return depth > 0 || inStr
}
