package trace

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/sglangd/sglangd/internal/testutil"
)

// Benchmarks run on the H200 TP=2 fixtures as they are; bench/trace.sh
// scales them up to hundreds of MB per rank and compares with SGLang's
// merger.

func plainFixture(b *testing.B, rel string) []byte {
	b.Helper()
	raw, err := os.ReadFile(testutil.TraceFixture(b, rel))
	if err != nil {
		b.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		b.Fatal(err)
	}
	return plain
}

// BenchmarkReader measures the tokenizer alone on uncompressed JSON.
func BenchmarkReader(b *testing.B) {
	plain := plainFixture(b, "h200/1764201700.000002-TP-1.trace.json.gz")
	b.SetBytes(int64(len(plain)))
	b.ResetTimer()
	var events int64
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(plain))
		if err != nil {
			b.Fatal(err)
		}
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			events++
		}
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMerge merges the two H200 ranks into a gzip file.
func BenchmarkMerge(b *testing.B) {
	dir := filepath.Join(testutil.FixturesDir(b), "traces", "h200")
	files, err := Discover(dir, DiscoverOptions{Profile: "1764201700.000002"})
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "merged.trace.json.gz")
	var bytesIn, events int64
	for b.Loop() {
		res, err := MergeFiles(context.Background(), files, out, MergeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		bytesIn, events = 0, events+res.InputEvents
		for _, f := range res.Files {
			bytesIn += f.Bytes
		}
	}
	b.SetBytes(bytesIn)
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAnalyze analyses the two H200 ranks as a session.
func BenchmarkAnalyze(b *testing.B) {
	dir := filepath.Join(testutil.FixturesDir(b), "traces", "h200")
	var events int64
	for b.Loop() {
		s, err := AnalyzePath(context.Background(), dir, AnalyzeOptions{Profile: "1764201700.000002"})
		if err != nil {
			b.Fatal(err)
		}
		events += s.Events.Total
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
