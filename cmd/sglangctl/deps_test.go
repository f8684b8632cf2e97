package main

import (
	"os/exec"
	"strings"
	"testing"
)

// sglangctl is a thin client: it must never link the daemon's machinery
// (Docker client, NVML, SQLite, the store), which would bloat it and
// blur the API boundary.
func TestCLIDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/sglangd/sglangd/pkg/store",
		"github.com/sglangd/sglangd/pkg/docker",
		"github.com/sglangd/sglangd/pkg/gpu",
		"github.com/sglangd/sglangd/pkg/model",
		"github.com/sglangd/sglangd/pkg/session",
		"github.com/sglangd/sglangd/pkg/api/server",
		"github.com/NVIDIA/go-nvml",
		"github.com/moby/moby/client",
		"modernc.org/sqlite",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("sglangctl depends on %s", dep)
			}
		}
	}
}
