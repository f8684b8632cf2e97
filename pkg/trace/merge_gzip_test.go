package trace

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/flate"
	"github.com/sglangd/sglangd/internal/testutil"
)

func TestCRC32Combine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 7, 100, 4096, 1 << 20} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		want := crc32.ChecksumIEEE(data)
		for trial := range 20 {
			// Cut points, sorted, repeats allowed: zero-length pieces,
			// including at either end.
			cuts := []int{0, size}
			for range trial % 6 {
				cuts = append(cuts, rng.IntN(size+1))
			}
			if trial%3 == 0 {
				cuts = append(cuts, 0, size)
			}
			slices.Sort(cuts)
			var crc uint32
			for i := 1; i < len(cuts); i++ {
				piece := data[cuts[i-1]:cuts[i]]
				crc = crc32Combine(crc, crc32.ChecksumIEEE(piece), int64(len(piece)))
			}
			if crc != want {
				t.Fatalf("size %d cuts %v: combined crc %08x, want %08x", size, cuts, crc, want)
			}
		}
	}
	// zlib's documented identity: combining with an empty piece is a no-op.
	if got := crc32Combine(0xdeadbeef, 0, 0); got != 0xdeadbeef {
		t.Errorf("combine with empty piece = %08x", got)
	}
}

// gunzipSingle decompresses a gzip file and fails unless it is exactly one
// member with nothing after it.
func gunzipSingle(t testing.TB, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	br := bytes.NewReader(raw)
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	plain, err := io.ReadAll(zr) // checks the CRC-32 and length
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if br.Len() != 0 {
		t.Fatalf("%s: %d bytes after the first gzip member", path, br.Len())
	}
	return plain
}

// synthRanks writes ranks covering the section edge cases: an empty rank
// first and in the middle, a rank without metadata (added sort indexes), a
// rank larger than several chunks, string pids and flow ids.
func synthRanks(t testing.TB, dir string, bigEvents int) []RankFile {
	t.Helper()
	const base = int64(1_790_857_026_000_000_000)
	big := make([]string, 0, bigEvents+1)
	big = append(big, `{"name": "process_sort_index", "ph": "M", "ts": 0, "pid": 3, "tid": 0, "args": {"sort_index": 3}}`)
	for i := range bigEvents {
		big = append(big, fmt.Sprintf(`{"ph": "X", "cat": "kernel", "name": "kernel_%d_with_a_longish_name", "pid": %d, "tid": 7, "ts": %d.%03d, "dur": 1.5, "args": {"correlation": %d, "device": 0}}`, i%97, 3+i%3, 1000+i, i%1000, i))
		if i%50 == 0 {
			big = append(big, fmt.Sprintf(`{"ph": "s", "id": %d, "pid": 3, "tid": 7, "ts": %d, "cat": "ac2g", "name": "ac2g"}`, i, 1000+i))
		}
	}
	ranks := [][]string{
		nil,
		{`{"ph": "X", "name": "a", "pid": "Spans", "tid": 1, "ts": 1, "dur": 1}`, `{"ph": "f", "id": "x7", "pid": 0, "tid": 7, "ts": 3, "cat": "ac2g", "name": "ac2g", "bp": "e"}`},
		nil,
		big,
		{`{"ph": "i", "name": "Record Window End", "pid": "", "tid": "", "ts": 9, "s": "g"}`},
	}
	var files []RankFile
	for i, evs := range ranks {
		path := filepath.Join(dir, fmt.Sprintf("p-TP-%d.trace.json.gz", i))
		writeTrace(t, path, base+int64(i)*1000, evs...)
		files = append(files, RankFile{Path: path, Rank: Rank{TP: i, HasTP: true}})
	}
	return files
}

func TestMergeGzip_SameAsSequential(t *testing.T) {
	fx := filepath.Join(testutil.FixturesDir(t), "traces")
	h200, err := Discover(filepath.Join(fx, "h200"), DiscoverOptions{Profile: "1764201700.000002"})
	if err != nil {
		t.Fatal(err)
	}
	tracelens, err := Discover(filepath.Join(fx, "tracelens"), DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tracelens = slices.DeleteFunc(tracelens, func(f RankFile) bool { return strings.Contains(f.Path, "prefilldecode") })
	synth := synthRanks(t, t.TempDir(), 4000)
	cases := []struct {
		name  string
		files []RankFile
		opts  MergeOptions
	}{
		{"h200 TP=2", h200, MergeOptions{}},
		{"tracelens unnamed ranks", tracelens, MergeOptions{Concurrency: 2}},
		{"synthetic one worker", synth, MergeOptions{Concurrency: 1}},
		{"synthetic two workers", synth, MergeOptions{Concurrency: 2}},
		{"synthetic worker per rank", synth, MergeOptions{Concurrency: len(synth)}},
		{"synthetic best compression", synth, MergeOptions{Level: flate.BestCompression}},
		{"synthetic huffman only", synth, MergeOptions{Level: flate.HuffmanOnly}},
		{"single rank", synth[3:4], MergeOptions{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if raceEnabled && tc.name == "tracelens unnamed ranks" {
				t.Skip("slow under -race; h200 covers real traces")
			}
			var want bytes.Buffer
			seq, err := Merge(context.Background(), tc.files, &want, MergeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var progress []MergeProgress
			opts := tc.opts
			opts.Progress = func(p MergeProgress) { progress = append(progress, p) }
			out := filepath.Join(t.TempDir(), "merged.trace.json.gz")
			res, err := MergeFiles(context.Background(), tc.files, out, opts)
			if err != nil {
				t.Fatal(err)
			}
			got := gunzipSingle(t, out)
			if !bytes.Equal(got, want.Bytes()) {
				i := 0
				for i < min(len(got), want.Len()) && got[i] == want.Bytes()[i] {
					i++
				}
				t.Fatalf("parallel output differs from sequential at byte %d of %d/%d: %q vs %q", i, len(got), want.Len(),
					got[max(0, i-40):min(len(got), i+40)], want.Bytes()[max(0, i-40):min(want.Len(), i+40)])
			}
			st, _ := os.Stat(out)
			if res.Path != out || res.OutputBytes != st.Size() {
				t.Errorf("result path %q bytes %d, want %q %d", res.Path, res.OutputBytes, out, st.Size())
			}
			res.Path, res.OutputBytes = "", 0
			if !reflect.DeepEqual(res, seq) {
				t.Errorf("result = %+v\nwant   %+v", res, seq)
			}
			if len(progress) != len(tc.files) {
				t.Fatalf("progress called %d times, want %d", len(progress), len(tc.files))
			}
			seen := map[string]bool{}
			for i, p := range progress {
				j := slices.IndexFunc(tc.files, func(f RankFile) bool { return f.Path == p.File })
				if p.Done != i+1 || p.Total != len(tc.files) || j < 0 || seen[p.File] || p.Events != seq.Files[j].Events {
					t.Errorf("progress[%d] = %+v", i, p)
				}
				seen[p.File] = true
			}
			entries, _ := os.ReadDir(filepath.Dir(out))
			if len(entries) != 1 {
				t.Errorf("output directory holds %d entries, want only the output", len(entries))
			}
		})
	}
}

// Perfetto's loader and Python's gzip module must read the output as one
// ordinary gzip member.
func TestMergeGzip_ExternalDecoders(t *testing.T) {
	files := synthRanks(t, t.TempDir(), 3000)
	out := filepath.Join(t.TempDir(), "merged.trace.json.gz")
	res, err := MergeFiles(context.Background(), files, out, MergeOptions{Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	events := res.InputEvents + int64(res.AddedEvents)
	if gz, err := exec.LookPath("gzip"); err != nil {
		t.Errorf("gzip not installed, cannot run gzip -t: %v", err)
	} else if b, err := exec.Command(gz, "-t", out).CombinedOutput(); err != nil {
		t.Errorf("gzip -t: %v: %s", err, b)
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("python3 not installed, cannot check Python's gzip: %v", err)
	}
	const script = `
import gzip, json, sys, zlib
raw = open(sys.argv[1], "rb").read()
d = zlib.decompressobj(31)
d.decompress(raw)
assert d.eof and d.unused_data == b"", "not exactly one gzip member"
with gzip.open(sys.argv[1], "rt") as f:
    doc = json.load(f)
print(len(doc["traceEvents"]))
`
	b, err := exec.Command(py, "-c", script, out).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, b)
	}
	if n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); n != events {
		t.Errorf("python read %s events, want %d", b, events)
	}
}

func openFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

func TestMergeGzip_CancelledMidMerge(t *testing.T) {
	for _, conc := range []int{1, 2} {
		t.Run(fmt.Sprintf("concurrency %d", conc), func(t *testing.T) {
			dir := t.TempDir()
			var files []RankFile
			// Rank 0 is tiny, the others large enough to be mid-copy when
			// rank 0's progress cancels the merge.
			for i := range 4 {
				n := 1
				if i > 0 {
					n = 20000
				}
				evs := make([]string, n)
				for j := range evs {
					evs[j] = fmt.Sprintf(`{"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": %d, "dur": 1}`, j)
				}
				path := filepath.Join(dir, fmt.Sprintf("p-TP-%d.trace.json.gz", i))
				writeTrace(t, path, 1, evs...)
				files = append(files, RankFile{Path: path, Rank: Rank{TP: i, HasTP: true}})
			}
			fds := openFDs(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := filepath.Join(dir, "merged.trace.json.gz")
			_, err := MergeFiles(ctx, files, out, MergeOptions{Concurrency: conc, Progress: func(MergeProgress) { cancel() }})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(files) {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("left behind: %v", names)
			}
			if n := openFDs(t); n > fds {
				t.Errorf("%d file descriptors open after the merge, %d before: spools or inputs left open", n, fds)
			}
		})
	}
}

func TestMergeGzip_BadLevel(t *testing.T) {
	files := synthRanks(t, t.TempDir(), 1)
	dir := t.TempDir()
	_, err := MergeFiles(context.Background(), files, filepath.Join(dir, "m.json.gz"), MergeOptions{Level: 12})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("err = %v, want invalid argument", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("%d files left behind", len(entries))
	}
}

// Both decompression modes (readahead or not, chosen by core count) must
// report a damaged gzip input the same way, and so must the parallel merge.
func TestMergeGzip_DamagedCompressedInput(t *testing.T) {
	dir := t.TempDir()
	evs := make([]string, 5000)
	for i := range evs {
		evs[i] = fmt.Sprintf(`{"ph": "X", "cat": "kernel", "name": "k%d", "pid": 0, "tid": 7, "ts": %d, "dur": 1}`, i*7919%10007, i)
	}
	good := filepath.Join(dir, "p-TP-0.trace.json.gz")
	writeTrace(t, good, 1, evs...)
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "p-TP-1.trace.json.gz")
	if err := os.WriteFile(truncated, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(raw)
	flipped[len(flipped)-6] ^= 0xff // inside the CRC-32
	badCRC := filepath.Join(dir, "p-TP-2.trace.json.gz")
	if err := os.WriteFile(badCRC, flipped, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path      string
		truncated bool
	}{{truncated, true}, {badCRC, false}}
	for _, tc := range cases {
		for _, readahead := range []bool{true, false} {
			r, err := openTrace(tc.path, readahead)
			if err != nil {
				t.Fatal(err)
			}
			for err == nil {
				_, err = r.Next()
			}
			_ = r.Close()
			var se *SyntaxError
			if !errors.As(err, &se) || se.Truncated != tc.truncated || se.Offset == 0 || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("%s readahead=%v: err = %v, want a syntax error with offset, truncated=%v", filepath.Base(tc.path), readahead, err, tc.truncated)
			}
		}
		files := []RankFile{{Path: good, Rank: Rank{TP: 0, HasTP: true}}, {Path: tc.path, Rank: Rank{TP: 1, HasTP: true}}}
		out := filepath.Join(t.TempDir(), "m.json.gz")
		_, err := MergeFiles(context.Background(), files, out, MergeOptions{Concurrency: 2})
		if err == nil || !strings.Contains(err.Error(), filepath.Base(tc.path)) || !strings.Contains(err.Error(), "at byte ") {
			t.Errorf("merge with %s: err = %v, want an error naming the file and byte offset", filepath.Base(tc.path), err)
		}
	}
}
