package model

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/dustin/go-humanize"
	"github.com/gofrs/flock"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// PullRequest names what to download.
type PullRequest struct {
	// Repo is the model id, org/name.
	Repo string
	// Revision is a branch, tag or commit; default "main".
	Revision string
	// Commit, if set, is Revision already pinned (see Resolve): the pull
	// downloads it and records Revision as a ref to it.
	Commit string
	// Include and Exclude are fnmatch globs over repository paths ("*"
	// matches "/" too); nil means the Cache's defaults.
	Include, Exclude []string
}

// Snapshot is one downloaded commit of a repo.
type Snapshot struct {
	Repo   string
	Commit string
	// Revisions are the refs (branches, tags) that point at Commit.
	Revisions []string
	// Path is snapshots/<commit>: SGLang's --model-path.
	Path  string
	Files int
	Size  int64
	// Verified is true when every file was hashed by sglangd (during the
	// download or by Verify) and its blob is unchanged since.
	Verified   bool
	VerifiedAt time.Time
}

// pullRun is one running pull.
type pullRun struct {
	c      *Cache
	opts   runOptions
	log    *zap.Logger
	repo   string
	rev    string
	commit string
	rd     repoDir

	started time.Time
	phase   atomic.Value // Phase
	// mu guards commit and files while the pull is being set up; the
	// reporter reads them.
	mu         sync.Mutex
	files      []*fileTask
	downloaded atomic.Int64
	meter      rateMeter // reporter-only

	conns chan struct{}
	bufs  sync.Pool
	wake  chan struct{} // pokes the reporter
}

func (r *pullRun) acquire(ctx context.Context) error {
	select {
	case r.conns <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *pullRun) release() { <-r.conns }

// copyBufSize balances syscall count against memory: one buffer per
// connection and per file hasher.
const copyBufSize = 1 << 20

func (r *pullRun) getBuf() []byte  { return *(r.bufs.Get().(*[]byte)) }
func (r *pullRun) putBuf(b []byte) { r.bufs.Put(&b) }

// poke asks the reporter for an early report (a file changed state).
func (r *pullRun) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Pull downloads the selected files of repo at the requested revision into
// the cache and returns the snapshot. Files already in the cache are
// linked, partial downloads resume. fn (may be nil) receives progress
// reports from a single goroutine; it is not called after Pull returns.
// Cancelling ctx stops the download and keeps its state for a resume.
func (c *Cache) Pull(ctx context.Context, req PullRequest, fn func(Progress)) (*Snapshot, error) {
	if req.Revision == "" {
		req.Revision = "main"
	}
	if err := checkRepoID(req.Repo); err != nil {
		return nil, err
	}
	if err := checkRevision(req.Revision); err != nil {
		return nil, err
	}
	commit := req.Commit
	if isCommit(req.Revision) {
		commit = req.Revision
	}
	if commit != "" && !isCommit(commit) {
		return nil, fmt.Errorf("commit %q: %w: expected 40 hex digits", commit, errdefs.ErrInvalidArgument)
	}
	return c.pull(ctx, req, commit, fn)
}

// Resolve pins a revision to a commit without downloading anything.
func (c *Cache) Resolve(ctx context.Context, repo, revision string) (string, error) {
	if revision == "" {
		revision = "main"
	}
	if err := checkRepoID(repo); err != nil {
		return "", err
	}
	if err := checkRevision(revision); err != nil {
		return "", err
	}
	if isCommit(revision) {
		return revision, nil
	}
	commit, err := c.hub.revision(ctx, repo, revision)
	if err != nil && errors.Is(err, errdefs.ErrUnavailable) {
		// Offline: a ref we wrote earlier still names the commit.
		if b, rerr := os.ReadFile(newRepoDir(c.opts.CacheDir, repo).ref(revision)); rerr == nil && isCommit(string(b)) {
			c.log.Warn("hub unreachable; using the cached ref", zap.String("repo", repo), zap.String("revision", revision), zap.Error(err))
			return string(b), nil
		}
	}
	return commit, err
}

func (c *Cache) pull(ctx context.Context, req PullRequest, commit string, fn func(Progress)) (snap *Snapshot, err error) {
	include, exclude := req.Include, req.Exclude
	if include == nil {
		include = c.opts.Include
	}
	if exclude == nil {
		exclude = c.opts.Exclude
	}
	filt, err := newFilter(include, exclude)
	if err != nil {
		return nil, err
	}
	c.enter(req.Repo)
	defer c.leave(req.Repo)
	defer func() {
		result := "ok"
		if err != nil {
			result = "error"
		}
		c.metrics.pulls.WithLabelValues(result).Inc()
	}()

	r := &pullRun{
		c: c, opts: c.opts, repo: req.Repo, rev: req.Revision, commit: commit,
		rd: newRepoDir(c.opts.CacheDir, req.Repo), started: time.Now(),
		log:   c.log.With(zap.String("repo", req.Repo), zap.String("revision", req.Revision)),
		conns: make(chan struct{}, c.opts.MaxConnections), wake: make(chan struct{}, 1),
	}
	r.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }

	// The reporter owns fn: every call comes from it, and it has stopped
	// before Pull returns.
	r.phase.Store(PhaseResolving)
	repCtx, stopRep := context.WithCancel(context.Background())
	repDone := make(chan struct{})
	emit := func(p Progress) {
		if fn != nil {
			fn(p)
		}
	}
	go func() {
		defer close(repDone)
		t := time.NewTicker(c.opts.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-repCtx.Done():
				return
			case <-t.C:
			case <-r.wake:
			}
			r.mu.Lock()
			p := r.report(time.Now(), r.phase.Load().(Phase))
			r.mu.Unlock()
			emit(p)
		}
	}()
	var stopOnce sync.Once
	stopReporter := func() {
		stopOnce.Do(func() {
			stopRep()
			<-repDone
		})
	}
	defer stopReporter()

	if commit == "" {
		cm, err := c.Resolve(ctx, req.Repo, req.Revision)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.commit = cm
		r.mu.Unlock()
	}
	r.log = r.log.With(zap.String("commit", r.commit))
	r.phase.Store(PhaseListing)
	r.poke()

	all, err := c.hub.tree(ctx, req.Repo, r.commit)
	if err != nil {
		if local := c.offlineSnapshot(req.Repo, r.commit, filt); local != nil && errors.Is(err, errdefs.ErrUnavailable) {
			r.log.Warn("hub unreachable; the cached snapshot is complete", zap.Error(err))
			return local, nil
		}
		return nil, err
	}
	var selected []remoteFile
	snapDir := r.rd.snapshot(r.commit)
	for _, f := range all {
		// A hostile listing is refused as a whole, selected or not: the
		// trees/ file would carry the name too.
		if _, err := snapshotPath(snapDir, f.Path); err != nil {
			return nil, fmt.Errorf("pull %s@%s: %w", req.Repo, r.commit, err)
		}
		if len(f.etag()) != 40 && len(f.etag()) != 64 {
			return nil, fmt.Errorf("pull %s@%s: file %s has blob id %q, want a 40- or 64-hex hash: %w", req.Repo, r.commit, f.Path, f.etag(), ErrNotHub)
		}
		if filt.match(f.Path) {
			selected = append(selected, f)
		}
	}
	if len(selected) == 0 {
		return nil, withClass(fmt.Errorf("pull %s@%s: the include/exclude patterns select none of its %d files", req.Repo, r.commit, len(all)),
			errdefs.ErrInvalidArgument, "check --include/--exclude (or model.include/model.exclude); \"*\" matches across directories")
	}
	// Largest first: the long files start early and the tail is short.
	sort.SliceStable(selected, func(i, j int) bool { return selected[i].Size > selected[j].Size })
	r.mu.Lock()
	for _, f := range selected {
		r.files = append(r.files, &fileTask{rf: f, run: r})
	}
	r.mu.Unlock()

	err = r.download(ctx, snapDir)
	if err == nil {
		err = r.finish(all)
	}
	stopReporter()
	if err != nil {
		return nil, err
	}
	final := r.report(time.Now(), PhaseDone)
	emit(final)
	r.log.Info("model pulled", zap.Int("files", len(r.files)), zap.Int64("bytes", final.Total),
		zap.Int64("downloaded", final.Downloaded), zap.Duration("elapsed", final.Elapsed))
	return c.snapshot(req.Repo, r.commit)
}

// download links what is cached, checks disk space and fetches the rest.
func (r *pullRun) download(ctx context.Context, snapDir string) error {
	for _, dir := range []string{r.rd.blobs(), snapDir, r.rd.lockDir()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("model cache: %w", err)
		}
	}
	var todo []*fileTask
	var need int64
	for _, f := range r.files {
		ok, err := r.linkCached(snapDir, f)
		if err != nil {
			return err
		}
		if ok {
			f.setState(FileCached)
			continue
		}
		todo = append(todo, f)
		need += f.rf.Size - allocated(r.rd.blob(f.rf.etag())+partSuffix, f.rf.Size)
	}
	if err := r.checkSpace(need); err != nil {
		return err
	}
	r.phase.Store(PhaseDownloading)
	r.poke()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.ConcurrentFiles)
	for _, f := range todo {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := r.fetchFile(gctx, snapDir, f); err != nil {
				f.setState(FileFailed)
				return err
			}
			f.setState(FileDone)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("pull %s@%s: %w", r.repo, r.commit, err)
	}
	return ctx.Err()
}

// linkCached links f if its blob is already in the cache.
func (r *pullRun) linkCached(snapDir string, f *fileTask) (bool, error) {
	fi, err := os.Stat(r.rd.blob(f.rf.etag()))
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != f.rf.Size {
		return false, nil
	}
	if err := linkSnapshot(snapDir, f.rf.Path, f.rf.etag()); err != nil {
		return false, err
	}
	// A leftover resume state of a blob that made it is garbage.
	_ = os.Remove(r.rd.blob(f.rf.etag()) + stateSuffix)
	return true, nil
}

// allocated returns the bytes already reserved by a partial blob.
func allocated(name string, size int64) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return min(st.Blocks*512, size)
	}
	return 0
}

// checkSpace refuses to start when the missing bytes do not fit.
func (r *pullRun) checkSpace(need int64) error {
	if need <= 0 {
		return nil
	}
	free, err := r.opts.FreeSpace(r.rd.blobs())
	if err != nil {
		r.log.Warn("cannot read free disk space; downloading anyway", zap.Error(err))
		return nil
	}
	// Keep a margin for the filesystem's own metadata and other writers.
	margin := min(need/100+(64<<20), 1<<30)
	if free < need+margin {
		return withClass(fmt.Errorf("pull %s@%s: %w: need %s more in %s, %s free", r.repo, r.commit, ErrNoSpace,
			humanize.IBytes(uint64(need+margin)), r.opts.CacheDir, humanize.IBytes(uint64(free))), errdefs.ErrResourceExhausted,
			"free space in the model cache, point model.cache_dir at a larger disk, or narrow --include")
	}
	return nil
}

// fetchFile downloads one blob under its lock and links it.
func (r *pullRun) fetchFile(ctx context.Context, snapDir string, f *fileTask) error {
	etag := f.rf.etag()
	lk := flock.New(r.rd.lock(etag))
	locked, err := lk.TryLockContext(ctx, 200*time.Millisecond)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		// Some network filesystems refuse flock; the lock is best effort
		// (hf-hub-protocol §5 step 5).
		r.log.Warn("cannot lock blob; continuing without the lock", zap.String("lock", r.rd.lock(etag)), zap.Error(err))
	case locked:
		defer lk.Unlock()
	}
	// Somebody (another pull, Python) may have finished it meanwhile.
	if ok, err := r.linkCached(snapDir, f); err != nil || ok {
		return err
	}
	d := &blobDownload{
		run: r, file: f, log: r.log.With(zap.String("path", f.rf.Path)),
		blobPath: r.rd.blob(etag), partPath: r.rd.blob(etag) + partSuffix, statePath: r.rd.blob(etag) + stateSuffix,
		wake: make(chan struct{}, 1), ckpt: make(chan struct{}, 1), syncReq: make(chan struct{}, 1),
		threshold: max(r.opts.PartSize/2, 1),
	}
	if err := d.fetch(ctx); err != nil {
		return err
	}
	return linkSnapshot(snapDir, f.rf.Path, etag)
}

// finish writes the ref, the commit's tree and the verification record.
func (r *pullRun) finish(all []remoteFile) error {
	if err := writeRef(r.rd, r.rev, r.commit); err != nil {
		return err
	}
	if err := writeTree(r.rd, r.commit, all); err != nil {
		return err
	}
	verified := map[string]bool{}
	var selected []string
	for _, f := range r.files {
		if f.getState() == FileDone {
			verified[f.rf.Path] = true
		}
		selected = append(selected, f.rf.Path)
	}
	sort.Strings(selected)
	return r.c.writeRecord(r.repo, r.commit, verified, false, selected)
}

// offlineSnapshot returns the snapshot if every file the filter selects
// from the cached tree is linked, else nil.
func (c *Cache) offlineSnapshot(repo, commit string, filt *filter) *Snapshot {
	rd := newRepoDir(c.opts.CacheDir, repo)
	files, err := readTree(rd, commit)
	if err != nil {
		return nil
	}
	n := 0
	for p := range files {
		if !filt.match(p) {
			continue
		}
		full, err := snapshotPath(rd.snapshot(commit), p)
		if err != nil {
			return nil
		}
		if _, err := os.Stat(full); err != nil {
			return nil
		}
		n++
	}
	if n == 0 {
		return nil
	}
	s, err := c.snapshot(repo, commit)
	if err != nil {
		return nil
	}
	return s
}

// snapshotFiles walks a snapshot directory and returns its files,
// relative and slash-separated.
func snapshotFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() || filepath.Base(p)[0] == '.' && isTempLink(filepath.Base(p)) {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(out)
	return out, err
}

func isTempLink(name string) bool { return len(name) > 14 && name[:14] == ".sglangd-link-" }
