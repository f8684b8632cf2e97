package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/sglangd/sglangd/pkg/api"
	"github.com/sglangd/sglangd/pkg/api/server"
)

// checks lists the doctor's checks. Features add theirs here as they are
// wired in (GPU, Docker, registry credentials, model cache).
func (d *daemon) checks() []server.Check {
	return []server.Check{
		{Name: "daemon", Run: d.checkDaemon},
		{Name: "state", Run: d.checkState},
		{Name: "data_dir", Run: d.checkDataDir},
		{Name: "gpu", Run: d.checkGPU},
		{Name: "docker", Run: d.checkDocker},
		{Name: "registry_credentials", Run: d.checkRegistryCredentials},
		{Name: "model_cache", Run: d.checkModelCache},
	}
}

func (d *daemon) checkDaemon(context.Context) api.Check {
	return api.Check{Status: api.CheckOK,
		Message: fmt.Sprintf("sglangd %s up %s (pid %d)", d.build.Version, time.Since(d.startedAt).Round(time.Second), os.Getpid()),
		Details: map[string]string{"version": d.build.Version, "pid": fmt.Sprint(os.Getpid())}}
}

func (d *daemon) checkState(ctx context.Context) api.Check {
	d.mu.RLock()
	st := d.st
	d.mu.RUnlock()
	if st == nil {
		return api.Check{Status: api.CheckFail, Message: "state database not open yet", Hint: "the daemon is still starting; retry"}
	}
	if err := st.Check(ctx); err != nil {
		return api.Check{Status: api.CheckFail, Message: err.Error(), Hint: api.HintOf(err)}
	}
	v, _ := st.SchemaVersion(ctx)
	return api.Check{Status: api.CheckOK, Message: fmt.Sprintf("%s (schema %d, WAL)", st.Path(), v),
		Details: map[string]string{"path": st.Path(), "schema": fmt.Sprint(v)}}
}

// Thresholds for the data directory: model weights and traces are large.
const (
	dataDirWarnBytes = 50 << 30
	dataDirFailBytes = 2 << 30
)

func (d *daemon) checkDataDir(context.Context) api.Check {
	d.mu.RLock()
	dir := d.cfg.DataDir
	d.mu.RUnlock()
	f, err := os.CreateTemp(dir, ".doctor-*")
	if err != nil {
		return api.Check{Status: api.CheckFail, Message: fmt.Sprintf("%s is not writable: %v", dir, err),
			Hint: "give the sglangd user ownership of data_dir"}
	}
	f.Close()
	os.Remove(f.Name())
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return api.Check{Status: api.CheckWarn, Message: fmt.Sprintf("%s: cannot read free space: %v", dir, err)}
	}
	free := fs.Bavail * uint64(fs.Bsize)
	res := api.Check{Status: api.CheckOK, Message: fmt.Sprintf("%s writable, %s free", dir, humanize.IBytes(free)),
		Details: map[string]string{"path": dir, "free_bytes": fmt.Sprint(free)}}
	switch {
	case free < dataDirFailBytes:
		res.Status, res.Hint = api.CheckFail, "free space in data_dir: traces and models need tens of GB"
	case free < dataDirWarnBytes:
		res.Status, res.Hint = api.CheckWarn, "less than 50 GiB free: a 7B model and a few nights of traces may not fit"
	}
	return res
}
