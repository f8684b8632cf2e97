package hint

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
)

func TestHint(t *testing.T) {
	base := fmt.Errorf("gpu 0 busy: %w", errdefs.ErrConflict)
	err := fmt.Errorf("allocate: %w", Withf(base, "wait for session %s", "abc"))
	if got := Of(err); got != "wait for session abc" {
		t.Errorf("Of = %q", got)
	}
	if err.Error() != "allocate: gpu 0 busy: conflict" || !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("message or class changed: %v", err)
	}
	if Of(base) != "" || With(nil, "x") != nil || Withf(nil, "x") != nil {
		t.Error("hint invented for an error without one, or nil wrapped")
	}
}
