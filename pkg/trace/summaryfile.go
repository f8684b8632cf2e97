package trace

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"github.com/google/renameio/v2"
)

// WriteSummaryFile writes s as indented JSON (summary.json) atomically: a
// temporary file in the same directory, fsynced, then renamed.
func WriteSummaryFile(path string, s *Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	if err := renameio.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write summary %s: %w", path, err)
	}
	return nil
}

// ReadSummaryFile reads a summary written by WriteSummaryFile (or printed by
// `sglangctl trace analyze -o json`). A summary of a newer schema version
// is refused with errdefs.ErrFailedPrecondition.
func ReadSummaryFile(path string) (*Summary, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("summary %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read summary %s: %w", path, err)
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil || s.Version == 0 {
		return nil, fmt.Errorf("%s is not a trace summary (expected the JSON of trace analyze): %w", path, errdefs.ErrInvalidArgument)
	}
	if s.Version > SummaryVersion {
		return nil, fmt.Errorf("summary %s has schema version %d, newer than this build's %d: upgrade sglangd/sglangctl: %w", path, s.Version, SummaryVersion, errdefs.ErrFailedPrecondition)
	}
	return &s, nil
}
