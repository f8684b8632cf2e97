package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	buildMu    sync.Mutex
	buildDir   string
	buildCache = map[string]string{}
)

// BuildBinary compiles the main package at pkg (for example
// "./cmd/sglangd", relative to the repository root) once per test process
// and returns the binary's path. Integration tests run the real binaries.
func BuildBinary(tb testing.TB, pkg string, env ...string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + "|" + strings.Join(env, " ")
	if p, ok := buildCache[key]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "sglangd-test-bin-")
		if err != nil {
			tb.Fatalf("temp dir for binaries: %v", err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, filepath.Base(pkg)+"-"+shortHash(key))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = RepoRoot(tb)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	buildCache[key] = out
	return out
}

func shortHash(s string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	const hex = "0123456789abcdef"
	b := make([]byte, 8)
	for i := range b {
		b[i] = hex[h>>(28-4*uint(i))&0xf]
	}
	return string(b)
}
