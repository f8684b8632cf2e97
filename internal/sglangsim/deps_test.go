package sglangsim

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/sglangd/sglangd/internal/testutil"
)

// TestNotInProductionBinaries keeps the simulator out of sglangd and
// sglangctl: only cmd/sglang-sim and tests may import it.
func TestNotInProductionBinaries(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("go", "list", "-deps", "./cmd/sglangd", "./cmd/sglangctl")
	cmd.Dir = testutil.RepoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/sglangd/sglangd/internal/sglangsim") {
			t.Errorf("production binaries depend on %s", p)
		}
	}
}
