package model

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sglangd/sglangd/internal/hubtest"
)

func TestJobs_Pull_attachAndDetach(t *testing.T) {
	e := newEnv(t, hubtest.Options{Throttle: 1 << 20})
	c := e.cache()
	daemonCtx, stopDaemon := context.WithCancel(context.Background())
	defer stopDaemon()
	jobs := NewJobs(daemonCtx, c)
	want := wantFiles(t, e.srv, testRepo)

	// The first caller goes away mid-download: the download goes on.
	firstCtx, leave := context.WithCancel(context.Background())
	started := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		_, err := jobs.Pull(firstCtx, PullRequest{Repo: testRepo}, func(p Progress) {
			if p.Phase == PhaseDownloading && p.Completed > 0 {
				once.Do(func() { close(started) })
			}
		})
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("download did not start")
	}
	leave()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("detached caller got %v", err)
	}
	if len(jobs.Active()) != 1 {
		t.Fatalf("active = %v, want the download still running", jobs.Active())
	}
	// Removing a repo being downloaded is refused.
	if err := c.Remove(context.Background(), testRepo, ""); !errors.Is(err, ErrBusy) || !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("remove during pull: %v", err)
	}

	// Two late callers attach to the same download; the first report
	// they get is the current state, not a fresh start.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			snap, err := jobs.Pull(context.Background(), PullRequest{Repo: testRepo, Revision: "main"}, func(p Progress) {
				if first && p.Completed == 0 {
					t.Errorf("late joiner's first report shows no progress: %+v", p)
				}
				first = false
			})
			if err != nil || snap.Commit != e.commit {
				t.Errorf("attached pull: %+v, %v", snap, err)
			}
		}()
	}
	wg.Wait()
	checkSnapshot(t, e.opts.CacheDir, testRepo, e.commit, want)
	for p, b := range want {
		if got := e.srv.Stats(p).BytesServed; got != int64(len(b)) {
			t.Errorf("%s served %d bytes, want %d: one download for all callers", p, got, len(b))
		}
	}
	if len(jobs.Active()) != 0 {
		t.Error("finished job still active")
	}
}

func TestJobs_Pull_stopsWithDaemon(t *testing.T) {
	e := newEnv(t, hubtest.Options{Throttle: 256 << 10})
	c := e.cache()
	daemonCtx, stopDaemon := context.WithCancel(context.Background())
	jobs := NewJobs(daemonCtx, c)
	errc := make(chan error, 1)
	var once sync.Once
	go func() {
		_, err := jobs.Pull(context.Background(), PullRequest{Repo: testRepo}, func(p Progress) {
			if p.Completed > 0 {
				once.Do(stopDaemon)
			}
		})
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("pull ended with %v, want canceled by the daemon", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pull did not stop with the daemon")
	}
	jobs.Wait()
	if _, err := jobs.Pull(context.Background(), PullRequest{Repo: testRepo}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("pull after shutdown: %v", err)
	}
}
