package trace

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSummaryFile_RoundTripAndVersion(t *testing.T) {
	a, _ := h200Summaries(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "summary.json")
	if err := WriteSummaryFile(p, a); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSummaryFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(*a, *got, DefaultDiffOptions()); d.Verdict != Unchanged || got.GPUBusyNs != a.GPUBusyNs || len(got.Ranks[0].Steps) != len(a.Ranks[0].Steps) {
		t.Errorf("round trip changed the summary: %s", d.Verdict)
	}
	if err := os.WriteFile(p, []byte(`{"version": 99}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSummaryFile(p); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("newer version: %v", err)
	}
	if err := os.WriteFile(p, []byte(`{"traceEvents": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSummaryFile(p); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("not a summary: %v", err)
	}
	if _, err := ReadSummaryFile(filepath.Join(dir, "none.json")); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
}
