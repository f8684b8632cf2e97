package trace

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/sglangd/sglangd/internal/testutil"
)

func TestParseNanos(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"12", 12000, true},
		{"12.5", 12500, true},
		{"12.05", 12050, true},
		{"12.345", 12345, true},
		{"1712195495519689.047", 1712195495519689047, true}, // absolute us, float64 would lose the ns
		{"4927636462284.042", 4927636462284042, true},
		{"1712195495519689.7", 1712195495519689700, true}, // unpadded fraction (early 2024 Kineto)
		{"-3.25", -3250, true},
		{"68.0", 68000, true},
		{"1.2345", 1235, true}, // rounds the fourth digit
		{"1.2344", 1234, true},
		{"1e3", 1000000, true},
		{"1.5E-3", 2, true},
		{"0.0004", 0, true},
		{"12345678901234567.891", 0, false}, // overflows int64 ns
		{"", 0, false},
		{"abc", 0, false},
		{"1.2.3", 0, false},
		{"-", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseNanos([]byte(tc.in))
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseNanos(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, ns := range []int64{0, 1, 999, 1000, 1712195495519689047, -2500} {
		if back, ok := parseNanos(appendMicros(nil, ns)); !ok || back != ns {
			t.Errorf("round trip %d -> %s -> %d", ns, appendMicros(nil, ns), back)
		}
	}
}

func TestParseUint(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"18446744073709551615", 18446744073709551615, true}, // Comms Id exceeds int64
		{"18446744073709551616", 0, false},
		{"42.0", 42, true},
		{"-1", 0, false},
		{"4.5", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseUint([]byte(tc.in))
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseUint(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func readAll(t *testing.T, doc string) ([]Event, *Header, error) {
	t.Helper()
	r, err := NewReader(strings.NewReader(doc))
	if err != nil {
		return nil, nil, err
	}
	var evs []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return evs, r.Header(), nil
		}
		if err != nil {
			return evs, r.Header(), err
		}
		c := *ev
		c.Raw = bytes.Clone(ev.Raw)
		c.NameRaw = bytes.Clone(ev.NameRaw)
		c.Cat = bytes.Clone(ev.Cat)
		c.Pid.Raw = bytes.Clone(ev.Pid.Raw)
		c.Tid.Raw = bytes.Clone(ev.Tid.Raw)
		evs = append(evs, c)
	}
}

func TestReader_Fields(t *testing.T) {
	doc := "\ufeff" + `{"schemaVersion": 1, "unknownKey": {"nested": [1, {"a": "]"}]}, "baseTimeNanoseconds": 1790857026000000000,
	"distributedInfo": {"backend": "nccl", "rank": 3, "world_size": 8},
	"traceEvents": [
	{"ph": "X", "cat": "kernel", "name": "k\"q\u00e9", "pid": 2, "tid": "stream 7", "ts": "12.5", "dur": 3,
	 "args": {"correlation": 18446744073709551615, "External id": 9, "device": 1, "stream": 7, "graph id": 4, "extra": [[1,2],[3]]}, "future": null},
	{"ph": "i", "s": "g", "pid": "", "tid": "", "ts": 4927636787638.229, "name": "Record Window End"},
	{"ph": "f", "id": 15, "pid": -1, "tid": 0, "ts": 1, "cat": "ac2g", "name": "ac2g", "bp": "e"},
	{}
	], "traceName": "x.json"}`
	evs, h, err := readAll(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Fatalf("events = %d", len(evs))
	}
	k := evs[0]
	if k.Ph != 'X' || string(k.Cat) != "kernel" || k.Name() != "k\"qé" || !k.Pid.IsNum || k.Pid.Num != 2 || k.Tid.IsNum || k.Tid.String() != "stream 7" {
		t.Errorf("kernel = %+v", k)
	}
	if k.Ts != 12500 || k.Dur != 3000 || k.Args.Correlation != 18446744073709551615 || k.Args.ExternalID != 9 ||
		k.Args.Device != 1 || k.Args.Stream != 7 || k.Args.GraphID != 4 {
		t.Errorf("kernel fields = %+v", k)
	}
	if evs[1].Ts != 4927636787638229 || evs[1].Pid.IsNum || evs[1].Pid.String() != "" {
		t.Errorf("instant = %+v", evs[1])
	}
	if evs[2].FlowID != 15 || !evs[2].Pid.IsNum || evs[2].Pid.Num != -1 {
		t.Errorf("flow = %+v", evs[2])
	}
	if !h.HasBaseTime || h.BaseTimeNanoseconds != 1790857026000000000 || h.DistributedInfo == nil || h.DistributedInfo.Rank != 3 ||
		h.TraceName != "x.json" || h.SchemaVersion != 1 || len(h.Keys) != 5 || h.BeforeEvents != 4 {
		t.Errorf("header = %+v", h)
	}
	if v, ok := h.Get("unknownKey"); !ok || string(v) != `{"nested": [1, {"a": "]"}]}` {
		t.Errorf("unknown key = %s", v)
	}
}

func TestReader_ArrayFormAndEmpty(t *testing.T) {
	evs, h, err := readAll(t, `[{"ph":"X","ts":1,"dur":1,"name":"a","pid":1,"tid":1}]`)
	if err != nil || len(evs) != 1 || !h.ArrayForm {
		t.Fatalf("array form: %v %d", err, len(evs))
	}
	evs, _, err = readAll(t, `{"traceEvents": []}`)
	if err != nil || len(evs) != 0 {
		t.Fatalf("empty: %v %d", err, len(evs))
	}
}

func TestReader_Errors(t *testing.T) {
	valid := `{"traceEvents": [{"ph": "X", "name": "a", "pid": 1, "tid": 1, "ts": 1, "dur": 1}, {"ph": "X", "name": "b", "pid": 1, "tid": 1, "ts": 2, "dur": 1}]}`
	// Every proper prefix is truncated, never complete.
	for i := 0; i < len(valid); i++ {
		_, _, err := readAll(t, valid[:i])
		if !errors.Is(err, ErrTruncated) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("prefix %d (%q): err = %v, want truncated", i, valid[:i], err)
		}
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset > int64(i) {
			t.Fatalf("prefix %d: offset of %v", i, err)
		}
	}
	corrupt := []struct{ doc, want string }{
		{`{"traceEvents": [{"ph": "X" "name": "a"}]}`, "expected ',' or '}'"},
		{`{"traceEvents": [{"ph": "X", "args": {"a": [1}}]}`, "mismatched"},
		{`{"traceEvents": [{"ph": "X"},]}`, "expected an event object"},
		{`{"traceEvents": [1]}`, "expected an event object"},
		{`{"traceEvents": {}}`, "not an array"},
		{`{"traceEvents": []} x`, "after the end"},
		{`<html>`, "expected '{' or '['"},
		{`{"traceEvents": [{"ph": tru}]}`, "invalid literal"},
	}
	for _, tc := range corrupt {
		_, _, err := readAll(t, tc.doc)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrTruncated) {
			t.Errorf("%q: err = %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func TestReader_TruncatedGzipFixture(t *testing.T) {
	raw, err := os.ReadFile(testutil.TraceFixture(t, "tracelens/sglang_Qwen3-8B_decode.json.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{10, len(raw) / 3, len(raw) - 20} {
		r, err := NewReader(bytes.NewReader(raw[:cut]))
		if err != nil {
			continue // a cut gzip header is reported at once
		}
		n := 0
		for {
			_, err = r.Next()
			if err != nil {
				break
			}
			n++
		}
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("cut at %d: after %d events err = %v, want truncated", cut, n, err)
		}
	}
	// A plain copy read through gzip detection is fine.
	zr, _ := gzip.NewReader(bytes.NewReader(raw))
	plain, _ := io.ReadAll(zr)
	evs, _, err := readAll(t, string(plain))
	if err != nil || len(evs) != 2058 {
		t.Fatalf("plain: %v, %d events", err, len(evs))
	}
}

// TestReader_SmallWindow forces events to straddle refills and a buffer
// grow by reading through a 1-byte-at-a-time reader.
func TestReader_SmallWindow(t *testing.T) {
	big := strings.Repeat("x", 3*initialBuf)
	doc := `{"traceEvents": [{"ph": "X", "name": "` + big + `", "ts": 1, "dur": 2}, {"ph": "i", "ts": 5}]}`
	r, err := NewReader(io.MultiReader(strings.NewReader(doc[:10]), strings.NewReader(doc[10:])))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := r.Next()
	if err != nil || len(ev.NameRaw) != len(big) || ev.Dur != 2000 {
		t.Fatalf("big event: %v", err)
	}
	if ev, err = r.Next(); err != nil || ev.Ts != 5000 {
		t.Fatalf("second event: %v", err)
	}
	if _, err = r.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}
