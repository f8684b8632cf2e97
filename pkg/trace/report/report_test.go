package report

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestReport_RendersInChromium loads the report in headless Chromium (when
// installed; CI installs it) and checks the rendered DOM kept the charts.
func TestReport_RendersInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt-get install chromium): render check skipped")
	}
	dir := filepath.Join(testutil.FixturesDir(t), "traces", "h200")
	s, err := trace.AnalyzePath(context.Background(), dir, trace.AnalyzeOptions{Profile: "1764201700.000002"})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	page := filepath.Join(tmp, "report.html")
	if err := WriteFile(page, s, Options{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	png := filepath.Join(tmp, "shot.png")
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir="+filepath.Join(tmp, "profile"),
		"--screenshot="+png, "--window-size=1400,2000", "file://"+page)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium screenshot: %v\n%s", err, out)
	}
	st, err := os.Stat(png)
	if err != nil || st.Size() < 20_000 {
		t.Fatalf("screenshot missing or blank: %v", err)
	}
	dom, err := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir="+filepath.Join(tmp, "profile2"),
		"--dump-dom", "file://"+page).Output()
	if err != nil {
		t.Fatalf("chromium dump-dom: %v", err)
	}
	if n := strings.Count(string(dom), "<svg"); n != 4 || !strings.Contains(string(dom), "<rect") {
		t.Errorf("rendered DOM has %d svg charts", n)
	}
}
