package report

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sglangd/sglangd/internal/testutil"
	"github.com/sglangd/sglangd/pkg/trace"
)

func TestWriteFile_SelfContained(t *testing.T) {
	dir := filepath.Join(testutil.FixturesDir(t), "traces", "h200")
	s, err := trace.AnalyzePath(context.Background(), dir, trace.AnalyzeOptions{Profile: "1764201700.000002"})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "report.html")
	if err := WriteFile(out, s, Options{Title: "Session <x>", Subtitle: "h200 TP=2"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, want := range []string{"<!DOCTYPE html>", "Session &lt;x&gt;", `aria-label="GPU busy timeline"`, `aria-label="kernel family breakdown"`,
		`aria-label="step time distribution"`, `aria-label="rank imbalance"`, "[TP01]", "straggler", "DECODE", "ncclDevKernel_AllReduce"} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// No scripts, no external resources.
	if regexp.MustCompile(`(?i)<script|<link|src=|href=|url\(|@import`).MatchString(html) {
		t.Error("report references external resources or scripts")
	}
	if n := strings.Count(html, "<svg"); n != 4 || strings.Count(html, "</svg>") != n {
		t.Errorf("svg charts = %d", n)
	}
}

func TestWrite_EmptySummary(t *testing.T) {
	var sb strings.Builder
	if err := Write(&sb, &trace.Summary{}, Options{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "No GPU activity") || !strings.Contains(sb.String(), "No step annotations") {
		t.Errorf("empty report:\n%s", sb.String())
	}
}
