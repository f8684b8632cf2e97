// Package testutil holds helpers shared by the project's tests: where the
// shared fixtures live and how to skip clearly when they are absent.
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// FixturesEnv names the variable that overrides where the shared trace
// fixtures are read from. The default is ../shared/fixtures beside the
// repository root, which is where developers' checkouts and CI find them.
const FixturesEnv = "SGLANGD_FIXTURES"

// RepoRoot returns the directory holding go.mod, walking up from the test's
// working directory (a package directory under go test).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("no go.mod above the test's working directory")
		}
		dir = parent
	}
}

// FixturesDir returns the shared fixtures directory (the one holding
// traces/), skipping the test with a message that says how to provide it
// when it does not exist. Fixtures are never copied into the repository.
func FixturesDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv(FixturesEnv)
	if dir == "" {
		dir = filepath.Join(RepoRoot(tb), "..", "shared", "fixtures")
	}
	if _, err := os.Stat(filepath.Join(dir, "traces")); err != nil {
		tb.Skipf("shared fixtures not found at %s (set %s to the directory holding traces/): %v", dir, FixturesEnv, err)
	}
	return dir
}

// TraceFixture returns the path of one trace fixture relative to
// fixtures/traces (for example "h200/1764201600.000001-TP-0.trace.json.gz"),
// skipping the test when the fixtures are absent.
func TraceFixture(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(FixturesDir(tb), "traces", rel)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("trace fixture %s not found: %v", p, err)
	}
	return p
}
