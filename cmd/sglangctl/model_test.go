package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"

	"github.com/sglangd/sglangd/pkg/api"
)

// pullEvents is a pull as the daemon streams it: overall events and
// per-file events (one file finishing, one that the stream ends on before
// its last report), then the end.
func pullEvents() []api.ModelPullUpdate {
	a := api.ModelFileProgress{Path: "model-00001-of-00002.safetensors", SizeBytes: 300 << 20, State: api.ModelFileDownloading}
	b := api.ModelFileProgress{Path: "model-00002-of-00002.safetensors", SizeBytes: 200 << 20, State: api.ModelFileDownloading}
	overall := func(phase string, done int64, files int) api.ModelPullUpdate {
		return api.ModelPullUpdate{Op: "model.pull-1", Overall: &api.ModelPullEvent{Phase: phase, Repo: "acme/m", Revision: "main",
			Commit: "0123456789abcdef0123", Files: 2, FilesDone: files, TotalBytes: 500 << 20, CompletedBytes: done,
			BytesPerSecond: 100 << 20, ETASeconds: 3}}
	}
	file := func(f api.ModelFileProgress, done int64, state string) api.ModelPullUpdate {
		f.CompletedBytes, f.State = done, state
		return api.ModelPullUpdate{Op: "model.pull-1", File: &f}
	}
	return []api.ModelPullUpdate{
		{Op: "model.pull-1", Overall: &api.ModelPullEvent{Phase: api.ModelPhaseResolving, Repo: "acme/m", Revision: "main"}},
		overall(api.ModelPhaseDownloading, 0, 0),
		file(a, 100<<20, api.ModelFileDownloading),
		file(b, 50<<20, api.ModelFileDownloading),
		overall(api.ModelPhaseDownloading, 150<<20, 0),
		file(a, 300<<20, api.ModelFileVerifying),
		file(a, 300<<20, api.ModelFileDone),
		overall(api.ModelPhaseDownloading, 350<<20, 1),
		file(b, 200<<20, api.ModelFileDone),
		overall(api.ModelPhaseDone, 500<<20, 2),
	}
}

func TestModelLines(t *testing.T) {
	var buf bytes.Buffer
	d := &modelLines{w: &buf, done: map[string]bool{}, every: time.Hour}
	for _, ev := range pullEvents() {
		d.event(ev)
	}
	d.finish(true)
	out := buf.String()
	for _, want := range []string{
		"Resolving acme/m@main\n",
		"Downloading acme/m@0123456789ab: 2 files, 500.0MiB (0 B already here)\n",
		"  done   model-00001-of-00002.safetensors (300.0MiB)\n",
		"Done: 500.0MiB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "model-00001") != 1 {
		t.Errorf("a finished file is reported more than once:\n%s", out)
	}
}

func TestModelBars(t *testing.T) {
	var buf bytes.Buffer
	d := newModelBars(&buf, mpb.WithAutoRefresh(), mpb.WithWidth(200)) // draw although the output is no terminal
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, ev := range pullEvents() {
			d.event(ev)
			time.Sleep(20 * time.Millisecond) // let mpb render between events
		}
		d.finish(true)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("bar display hung")
	}
	out := buf.String()
	for _, want := range []string{"acme/m", "500.0MiB / 500.0MiB", "2/2 files"} {
		if !strings.Contains(out, want) {
			t.Errorf("bars lack %q:\n%s", want, out)
		}
	}
	if len(d.files) != 0 {
		t.Errorf("file bars left: %v", d.files)
	}
}
