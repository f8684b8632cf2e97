package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sglangd/sglangd/internal/cliutil"
	"github.com/sglangd/sglangd/internal/testutil"
	"github.com/sglangd/sglangd/pkg/trace"
)

func runCtl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cliutil.Execute(context.Background(), newRootCmd(&out, &errb), args, &errb)
	return code, out.String(), errb.String()
}

// The trace commands work without a daemon: merge, analyze (text, JSON,
// HTML, summary file) and diff with --fail-on-regression.
func TestTraceCommands(t *testing.T) {
	fx := filepath.Join(testutil.FixturesDir(t), "traces", "h200")
	tmp := t.TempDir()
	t.Setenv("SGLANGD_HOST", "unix://"+filepath.Join(tmp, "no-daemon.sock"))

	merged := filepath.Join(tmp, "merged.trace.json.gz")
	code, out, errs := runCtl(t, "trace", "merge", fx, "--profile", "1764201700.000002", "-o", merged)
	if code != 0 || !strings.Contains(out, "Merged 2 file(s), 60464 events") {
		t.Fatalf("merge: code %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCtl(t, "trace", "merge", fx, "-o", filepath.Join(tmp, "x.json.gz")); code != 1 || !strings.Contains(errs, "2 profiles") {
		t.Errorf("ambiguous merge: code %d %s", code, errs)
	}
	if code, _, _ := runCtl(t, "trace", "merge", fx); code != 2 {
		t.Errorf("merge without -o: code %d, want usage error", code)
	}

	html := filepath.Join(tmp, "report.html")
	sumB := filepath.Join(tmp, "b.json")
	code, out, errs = runCtl(t, "trace", "analyze", merged, "--html", html, "--summary", sumB)
	if code != 0 || !strings.Contains(out, "[TP00] is a straggler") || !strings.Contains(out, "DECODE") {
		t.Fatalf("analyze: code %d\n%s%s", code, out, errs)
	}
	if b, err := os.ReadFile(html); err != nil || !bytes.Contains(b, []byte("<svg")) {
		t.Errorf("report: %v", err)
	}

	code, out, _ = runCtl(t, "trace", "analyze", filepath.Join(fx, "1764201600.000001-TP-0.trace.json.gz"), "-o", "json")
	var a trace.Summary
	if code != 0 || json.Unmarshal([]byte(out), &a) != nil || a.Version != trace.SummaryVersion || len(a.Ranks) != 1 {
		t.Fatalf("analyze -o json: code %d\n%.300s", code, out)
	}
	sumA := filepath.Join(tmp, "a.json")
	if err := os.WriteFile(sumA, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}

	// Same profile: unchanged, exit 0 even with --fail-on-regression.
	if code, out, errs := runCtl(t, "trace", "diff", sumA, sumA, "--fail-on-regression"); code != 0 || !strings.Contains(out, "Verdict: unchanged") {
		t.Errorf("diff same: code %d\n%s%s", code, out, errs)
	}
	// TP=1 -> TP=2 adds all-reduce time: a regression, exit 1 when asked.
	if code, out, errs := runCtl(t, "trace", "diff", sumA, sumB, "--fail-on-regression"); code != 1 || !strings.Contains(out, "Verdict: regression") {
		t.Errorf("diff regression: code %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCtl(t, "trace", "diff", sumA, merged, "-o", "json")
	var d trace.DiffResult
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil || d.Verdict != trace.Regression {
		t.Errorf("diff -o json: code %d %.200s", code, out)
	}
}
