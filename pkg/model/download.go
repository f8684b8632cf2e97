package model

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Suffixes of a blob being downloaded. huggingface_hub's own temporaries
// end in .incomplete, which `hf cache prune` deletes and old versions
// append to; ours must survive both, so they are named differently.
const (
	partSuffix  = ".hfd.part"
	stateSuffix = ".hfd.part.json"
)

// partState is the resume record kept next to the partial blob,
// blobs/<etag>.hfd.part.json. For each part, Done counts the bytes from
// Off that were fsynced before the record was saved (with fsync off: that
// were written), and Written the bytes written, possibly only to the page
// cache. Written survives a killed process but not a power cut, so it is
// trusted only while the machine has not rebooted since: BootID.
type partState struct {
	Etag   string    `json:"etag"`
	Size   int64     `json:"size"`
	BootID string    `json:"boot_id,omitempty"`
	Parts  []partRec `json:"parts"`
}

type partRec struct {
	Off     int64 `json:"off"`
	Len     int64 `json:"len"`
	Done    int64 `json:"done"`
	Written int64 `json:"written,omitempty"`
}

// part is one byte range of a blob being downloaded.
type part struct {
	off, len int64
	written  atomic.Int64 // bytes from off in the file (maybe only in the page cache)
	synced   atomic.Int64 // bytes from off fsynced (== written when fsync is off)
}

// Attempt outcomes that decide how a part retries.
var (
	errStalled     = errors.New("no data received within the stall timeout")
	errRangeIgnore = errors.New("server ignored the Range header (200 instead of 206)")
)

// retryableError is a failed attempt worth another counted try.
type retryableError struct {
	err    error
	header http.Header // for Retry-After / RateLimit
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

// blobDownload fetches one blob into blobs/<etag>.hfd.part with ranged
// parallel parts, checkpoints progress, verifies the digest and renames
// the result into place.
type blobDownload struct {
	run  *pullRun
	file *fileTask
	log  *zap.Logger

	blobPath, partPath, statePath string

	f     *os.File
	parts []*part

	// URL state: re-resolved when the CDN says the presigned URL expired.
	mu     sync.Mutex
	url    *url.URL
	urlGen int

	wake      chan struct{} // wakes the hasher after writes
	ckpt      chan struct{} // asks the checkpointer to save now
	syncReq   chan struct{} // asks the syncer to fsync now
	total     atomic.Int64  // sum of parts' written
	syncAsked atomic.Int64  // total when the last fsync was asked for
	threshold int64         // bytes between fsyncs
}

// fetch downloads, verifies and publishes the blob. On an integrity
// failure it discards everything and starts over once.
func (d *blobDownload) fetch(ctx context.Context) error {
	c := d.run.c
	meta, err := d.resolve(ctx)
	if err != nil {
		return err
	}
	d.url = meta.dataURL
	for round := 0; ; round++ {
		err := d.fetchOnce(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrIntegrity) || round >= 1 {
			return err
		}
		c.log.Warn("downloaded blob failed its integrity check; discarding it and downloading again",
			zap.String("repo", d.run.repo), zap.String("path", d.file.rf.Path), zap.Error(err))
		d.file.restart()
	}
}

// resolve HEADs the file and checks the answer against the listing.
func (d *blobDownload) resolve(ctx context.Context) (*fileMeta, error) {
	rf := d.file.rf
	meta, err := d.run.c.hub.resolve(ctx, d.run.repo, d.run.commit, rf.Path)
	if err != nil {
		return nil, err
	}
	if meta.commit != d.run.commit {
		return nil, withClass(fmt.Errorf("resolve file %s %s: X-Repo-Commit is %s, want %s: %w", d.run.repo, rf.Path, meta.commit, d.run.commit, ErrNotHub),
			errdefs.ErrUnavailable, "the endpoint served another commit than it listed; check HF_ENDPOINT or pin --revision to a commit")
	}
	if meta.etag != "" && meta.etag != rf.etag() {
		// Some mirrors rewrite ETags. The content is checked against the
		// listing's hash anyway, so this alone is no reason to stop.
		d.log.Warn("resolve answered another etag than the listing; verifying against the listing",
			zap.String("etag", meta.etag), zap.String("listing", rf.etag()))
	}
	if meta.size >= 0 && meta.size != rf.Size {
		return nil, withClass(fmt.Errorf("resolve file %s %s: size %d, but the listing says %d: %w", d.run.repo, rf.Path, meta.size, rf.Size, ErrNotHub),
			errdefs.ErrUnavailable, "the endpoint is inconsistent; retry later or use another HF_ENDPOINT")
	}
	return meta, nil
}

// refreshURL re-resolves the data URL unless another part already did
// since gen was read.
func (d *blobDownload) refreshURL(ctx context.Context, gen int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.urlGen != gen {
		return nil
	}
	meta, err := d.resolve(ctx)
	if err != nil {
		return err
	}
	d.url = meta.dataURL
	d.urlGen++
	return nil
}

func (d *blobDownload) currentURL() (*url.URL, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.url, d.urlGen
}

// fetchOnce runs one full download round: open or reuse the partial blob,
// fetch the missing ranges while hashing the contiguous prefix, verify,
// publish.
func (d *blobDownload) fetchOnce(ctx context.Context) error {
	if err := d.open(); err != nil {
		return err
	}
	defer func() {
		if d.f != nil {
			d.f.Close()
			d.f = nil
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	size := d.file.rf.Size
	hashRes := make(chan hashResult, 1)
	go func() { hashRes <- d.hashPrefix(ctx, size) }()

	// The checkpointer records progress often and cheaply; the syncer
	// fsyncs in the background, so a slow disk never delays the record a
	// killed process resumes from.
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); d.checkpointLoop(bgCtx) }()
	go func() { defer bg.Done(); d.syncLoop(bgCtx) }()

	err := d.fetchParts(ctx)
	stopBg()
	bg.Wait()
	if err != nil {
		cancel()
		<-hashRes
		// Record what is in the file for the next attempt. No fsync: a
		// restart on this boot trusts Written, and stopping stays quick.
		if serr := d.checkpoint(); serr != nil {
			d.log.Warn("save download state", zap.String("path", d.statePath), zap.Error(serr))
		}
		return err
	}
	d.file.setState(FileVerifying)
	res := <-hashRes
	if res.err != nil {
		return res.err
	}
	if res.sum != d.file.rf.etag() {
		d.discard()
		return withClass(fmt.Errorf("%s: content hashes to %s, want %s: %w", d.file.rf.Path, res.sum, d.file.rf.etag(), ErrIntegrity),
			errdefs.ErrDataLoss, "the server sent corrupt data twice; retry later or use another HF_ENDPOINT")
	}
	return d.publish()
}

// open reuses a partial blob whose state matches, or starts a new one.
func (d *blobDownload) open() error {
	rf := d.file.rf
	st, err := readState(d.statePath)
	if err == nil && st.Etag == rf.etag() && st.Size == rf.Size && validParts(st.Parts, rf.Size) {
		if f, ferr := os.OpenFile(d.partPath, os.O_RDWR, 0); ferr == nil {
			if fi, serr := f.Stat(); serr == nil && fi.Size() == rf.Size {
				d.f = f
				// Bytes only in the page cache survive a killed process,
				// not a reboot.
				sameBoot := st.BootID != "" && st.BootID == d.run.c.bootID
				for i := range st.Parts {
					if sameBoot && st.Parts[i].Written > st.Parts[i].Done {
						st.Parts[i].Done = st.Parts[i].Written
					}
				}
				d.setParts(st.Parts)
				d.log.Info("resuming download", zap.String("path", rf.Path), zap.Int64("have", d.total.Load()), zap.Int64("size", rf.Size))
				return nil
			}
			f.Close()
		}
	}
	// Start over: the state is missing, stale or belongs to another blob.
	_ = os.Remove(d.statePath)
	f, err := os.OpenFile(d.partPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", d.partPath, err)
	}
	if err := preallocate(f, rf.Size); err != nil {
		f.Close()
		_ = os.Remove(d.partPath)
		return noSpace(fmt.Errorf("allocate %d bytes for %s: %w", rf.Size, d.partPath, err))
	}
	d.f = f
	d.setParts(planParts(rf.Size, d.run.opts.PartSize))
	return d.checkpoint()
}

func (d *blobDownload) setParts(recs []partRec) {
	d.parts = d.parts[:0]
	var total int64
	for _, r := range recs {
		p := &part{off: r.Off, len: r.Len}
		p.written.Store(r.Done)
		p.synced.Store(r.Done)
		total += r.Done
		d.parts = append(d.parts, p)
	}
	d.total.Store(total)
	d.syncAsked.Store(total)
	d.file.setHave(total)
}

// planParts splits size into ranges of partSize.
func planParts(size, partSize int64) []partRec {
	var out []partRec
	for off := int64(0); off < size; off += partSize {
		out = append(out, partRec{Off: off, Len: min(partSize, size-off)})
	}
	return out
}

// validParts checks that parts tile [0,size) in order.
func validParts(ps []partRec, size int64) bool {
	var off int64
	for _, p := range ps {
		if p.Off != off || p.Len <= 0 || p.Done < 0 || p.Done > p.Len {
			return false
		}
		off += p.Len
	}
	return off == size
}

func preallocate(f *os.File, size int64) error {
	if size == 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) {
		return err
	}
	// Filesystems without fallocate (tmpfs on old kernels, some FUSE).
	return f.Truncate(size)
}

// noSpace classifies ENOSPC so the user learns what to do.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return withClass(fmt.Errorf("%w: %w", ErrNoSpace, err), errdefs.ErrResourceExhausted,
			"free space in the model cache (model.cache_dir) or point it at a larger disk; the download resumes")
	}
	return err
}

func readState(path string) (*partState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st partState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// checkpoint records the parts' progress. It never waits for the disk:
// Done is what the syncer made durable, Written what is in the file.
func (d *blobDownload) checkpoint() error {
	st := partState{Etag: d.file.rf.etag(), Size: d.file.rf.Size, BootID: d.run.c.bootID}
	for _, p := range d.parts {
		w, s := p.written.Load(), p.synced.Load()
		if !d.run.opts.Durable {
			s = w
		}
		st.Parts = append(st.Parts, partRec{Off: p.off, Len: p.len, Done: s, Written: w})
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return noSpace(writeFileAtomic(d.statePath, b, 0o644, false))
}

// sync fsyncs the partial blob and then marks what was written before as
// durable.
func (d *blobDownload) sync() error {
	if !d.run.opts.Durable || d.f == nil {
		return nil
	}
	snap := make([]int64, len(d.parts))
	for i, p := range d.parts {
		snap[i] = p.written.Load()
	}
	if err := unix.Fdatasync(int(d.f.Fd())); err != nil {
		return noSpace(fmt.Errorf("sync %s: %w", d.partPath, err))
	}
	for i, p := range d.parts {
		if snap[i] > p.synced.Load() {
			p.synced.Store(snap[i])
		}
	}
	return nil
}

// checkpointInterval bounds how much a killed process loses: what
// arrived since the last record.
const checkpointInterval = 250 * time.Millisecond

// checkpointLoop records progress while data flows.
func (d *blobDownload) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	var lastWritten, lastSynced int64 = -1, -1
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.ckpt:
		case <-t.C:
		}
		var w, s int64
		for _, p := range d.parts {
			w += p.written.Load()
			s += p.synced.Load()
		}
		if w == lastWritten && s == lastSynced {
			continue
		}
		if err := d.checkpoint(); err != nil {
			d.log.Warn("save download state", zap.String("path", d.statePath), zap.Error(err))
			continue
		}
		lastWritten, lastSynced = w, s
	}
}

// syncLoop fsyncs the partial blob whenever asked (every threshold bytes
// and when a part completes), so Done advances without blocking writers.
func (d *blobDownload) syncLoop(ctx context.Context) {
	if !d.run.opts.Durable {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.syncReq:
		}
		if err := d.sync(); err != nil {
			d.log.Warn("sync partial blob", zap.String("path", d.partPath), zap.Error(err))
			continue
		}
		select {
		case d.ckpt <- struct{}{}:
		default:
		}
	}
}

// fetchParts downloads every unfinished part, ConnectionsPerFile at a
// time, each holding one of the pull's connection slots.
func (d *blobDownload) fetchParts(ctx context.Context) error {
	var todo []*part
	for _, p := range d.parts {
		if p.written.Load() < p.len {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	d.file.setState(FileDownloading)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(d.run.opts.ConnectionsPerFile)
	for _, p := range todo {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := d.run.acquire(gctx); err != nil {
				return err
			}
			defer d.run.release()
			return d.fetchPart(gctx, p)
		})
	}
	err := g.Wait()
	if err == nil {
		return ctx.Err()
	}
	return err
}

// fetchPart retries one part until it is complete. Stalls and expired
// URLs do not count against the retry budget; errors do.
func (d *blobDownload) fetchPart(ctx context.Context, p *part) error {
	opts := d.run.opts
	counted, stalls, expiries := 0, 0, 0
	for p.written.Load() < p.len {
		u, gen := d.currentURL()
		err := d.attempt(ctx, p, u)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var re *retryableError
		switch {
		case errors.Is(err, errStalled):
			stalls++
			d.file.retries.Add(1)
			d.run.c.metrics.retries.WithLabelValues("stall").Inc()
			d.log.Info("download stalled; reconnecting", zap.String("path", d.file.rf.Path), zap.Int64("offset", p.off+p.written.Load()),
				zap.Duration("stall_timeout", opts.StallTimeout))
			if stalls > opts.Retries+10 {
				return withClass(fmt.Errorf("%s: %w %d times in a row", d.file.rf.Path, errStalled, stalls), errdefs.ErrUnavailable,
					"the server keeps stalling; check the network or use another HF_ENDPOINT, then pull again (it resumes)")
			}
		case errors.Is(err, errURLExpired):
			expiries++
			d.file.retries.Add(1)
			d.run.c.metrics.retries.WithLabelValues("url_expired").Inc()
			if expiries > 5 {
				return fmt.Errorf("%s: download URL rejected after %d re-resolves: %w", d.file.rf.Path, expiries-1, err)
			}
			d.log.Info("download URL expired or was rejected; resolving again", zap.String("path", d.file.rf.Path))
			if err := d.refreshURL(ctx, gen); err != nil {
				return err
			}
		case errors.As(err, &re):
			counted++
			d.file.retries.Add(1)
			d.run.c.metrics.retries.WithLabelValues(retryReason(re)).Inc()
			if counted > opts.Retries {
				return fmt.Errorf("%s: giving up after %d retries: %w", d.file.rf.Path, opts.Retries, err)
			}
			wait := d.run.c.hub.retry.delay(counted-1, re.header)
			d.log.Info("download attempt failed; retrying", zap.String("path", d.file.rf.Path), zap.Int("retry", counted),
				zap.Duration("wait", wait), zap.Error(err))
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
		default:
			return err
		}
	}
	select {
	case d.syncReq <- struct{}{}:
	default:
	}
	return nil
}

// retryReason labels a counted retry for the metrics.
func retryReason(re *retryableError) string {
	var he *HubError
	switch {
	case errors.Is(re, errRangeIgnore):
		return "range_ignored"
	case errors.As(re, &he) && he.Status == http.StatusTooManyRequests:
		return "rate_limited"
	case errors.As(re, &he):
		return "http_" + strconv.Itoa(he.Status)
	case errors.Is(re, io.ErrUnexpectedEOF):
		return "truncated"
	}
	return "network"
}

// attempt sends one ranged GET for the rest of p and writes what arrives.
// It returns nil when the part is complete.
func (d *blobDownload) attempt(ctx context.Context, p *part, u *url.URL) error {
	opts := d.run.opts
	size := d.file.rf.Size
	start := p.off + p.written.Load()
	end := p.off + p.len - 1

	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	watchdogDone := make(chan struct{})
	defer close(watchdogDone)
	go func() {
		tick := min(time.Second, opts.StallTimeout/2)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-watchdogDone:
				return
			case <-actx.Done():
				return
			case now := <-t.C:
				if now.Sub(time.Unix(0, last.Load())) > opts.StallTimeout {
					cancel(errStalled)
					return
				}
			}
		}
	}()
	failed := func(err error) error {
		if errors.Is(context.Cause(actx), errStalled) {
			return errStalled
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}

	req, err := d.run.c.hub.newRequest(actx, http.MethodGet, u)
	if err != nil {
		return err
	}
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, end))
	resp, err := d.run.c.hub.hc.Do(req)
	if err != nil {
		return failed(&retryableError{err: fmt.Errorf("GET %s: %w", u.Redacted(), err)})
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		if err := checkContentRange(resp.Header.Get("Content-Range"), start, end, size); err != nil {
			return &retryableError{err: fmt.Errorf("%s: %w", d.file.rf.Path, err)}
		}
	case resp.StatusCode == http.StatusOK:
		// The whole file came back. Usable only when we asked from byte 0;
		// otherwise the rest of the part must be asked for again.
		if start != 0 || (resp.ContentLength >= 0 && resp.ContentLength != size) {
			return &retryableError{err: fmt.Errorf("%s: %w", d.file.rf.Path, errRangeIgnore)}
		}
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
		resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable || !d.run.c.hub.sameOrigin(u) {
			// Presigned CDN URLs expire after an hour: resolve again.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			return fmt.Errorf("%s: HTTP %d from %s: %w", d.file.rf.Path, resp.StatusCode, u.Host, errURLExpired)
		}
		return d.run.c.hub.hubError(resp, opInfo{op: "download", repo: d.run.repo, rev: d.run.commit, path: d.file.rf.Path})
	case isRetryableStatus(resp.StatusCode):
		return &retryableError{err: d.run.c.hub.hubError(resp, opInfo{op: "download", repo: d.run.repo, rev: d.run.commit, path: d.file.rf.Path}),
			header: resp.Header}
	default:
		return d.run.c.hub.hubError(resp, opInfo{op: "download", repo: d.run.repo, rev: d.run.commit, path: d.file.rf.Path})
	}

	buf := d.run.getBuf()
	defer d.run.putBuf(buf)
	off := start
	for off <= end {
		n, rerr := resp.Body.Read(buf[:min(int64(len(buf)), end-off+1)])
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := d.f.WriteAt(buf[:n], off); werr != nil {
				return noSpace(fmt.Errorf("write %s: %w", d.partPath, werr))
			}
			off += int64(n)
			p.written.Add(int64(n))
			d.file.add(int64(n))
			if t := d.total.Add(int64(n)); t-d.syncAsked.Load() >= d.threshold {
				d.syncAsked.Store(t)
				select {
				case d.syncReq <- struct{}{}:
				default:
				}
			}
			select {
			case d.wake <- struct{}{}:
			default:
			}
		}
		if rerr != nil {
			if off > end {
				break
			}
			if rerr == io.EOF {
				return &retryableError{err: fmt.Errorf("%s: body ended at byte %d of range %d-%d: %w", d.file.rf.Path, off, start, end, io.ErrUnexpectedEOF)}
			}
			return failed(&retryableError{err: fmt.Errorf("%s: read body: %w", d.file.rf.Path, rerr)})
		}
	}
	return nil
}

// checkContentRange demands exactly the range asked for and the size
// the listing gave: anything else means a confused proxy or a changed
// file, and writing it would corrupt the blob.
func checkContentRange(h string, start, end, size int64) error {
	s, e, n, err := parseContentRange(h)
	if err != nil {
		return err
	}
	if s != start || e != end || n != size {
		return fmt.Errorf("content-range %q, want \"bytes %d-%d/%d\"", h, start, end, size)
	}
	return nil
}

// parseContentRange parses "bytes a-b/size" (size may be "*").
func parseContentRange(h string) (start, end, size int64, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(h), "bytes ")
	if !ok {
		return 0, 0, 0, fmt.Errorf("content-range %q: want \"bytes a-b/size\"", h)
	}
	rng, total, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, fmt.Errorf("content-range %q: missing /size", h)
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, fmt.Errorf("content-range %q: missing range", h)
	}
	if start, err = strconv.ParseInt(a, 10, 64); err != nil || start < 0 {
		return 0, 0, 0, fmt.Errorf("content-range %q: bad start", h)
	}
	if end, err = strconv.ParseInt(b, 10, 64); err != nil || end < start {
		return 0, 0, 0, fmt.Errorf("content-range %q: bad end", h)
	}
	size = -1
	if total != "*" {
		if size, err = strconv.ParseInt(total, 10, 64); err != nil || size <= end {
			return 0, 0, 0, fmt.Errorf("content-range %q: bad size", h)
		}
	}
	return start, end, size, nil
}

type hashResult struct {
	sum string
	err error
}

// newBlobHash returns the hash that names a blob: sha256 for 64-hex etags
// (LFS), git's sha1 over "blob <len>\0"+content for 40-hex ones.
func newBlobHash(etag string, size int64) (hash.Hash, error) {
	switch len(etag) {
	case 64:
		return sha256.New(), nil
	case 40:
		h := sha1.New()
		fmt.Fprintf(h, "blob %d\x00", size)
		return h, nil
	}
	return nil, fmt.Errorf("etag %q is neither a sha256 nor a git sha1: %w", etag, ErrNotHub)
}

// hashPrefix hashes the blob while it downloads, following the contiguous
// prefix that the parts have written, so verification costs no extra pass
// once the last byte lands.
func (d *blobDownload) hashPrefix(ctx context.Context, size int64) hashResult {
	h, err := newBlobHash(d.file.rf.etag(), size)
	if err != nil {
		return hashResult{err: err}
	}
	buf := d.run.getBuf()
	defer d.run.putBuf(buf)
	var off int64
	for off < size {
		avail := d.contiguous()
		if avail <= off {
			select {
			case <-ctx.Done():
				return hashResult{err: ctx.Err()}
			case <-d.wake:
			}
			continue
		}
		n := min(avail-off, int64(len(buf)))
		if _, err := d.f.ReadAt(buf[:n], off); err != nil {
			return hashResult{err: fmt.Errorf("read back %s: %w", d.partPath, err)}
		}
		h.Write(buf[:n])
		off += n
	}
	return hashResult{sum: hex.EncodeToString(h.Sum(nil))}
}

// contiguous returns how many bytes from offset 0 are written.
func (d *blobDownload) contiguous() int64 {
	var n int64
	for _, p := range d.parts {
		w := p.written.Load()
		n += w
		if w < p.len {
			break
		}
	}
	return n
}

// discard drops the partial blob and its state after a failed check.
func (d *blobDownload) discard() {
	if d.f != nil {
		d.f.Close()
		d.f = nil
	}
	_ = os.Remove(d.partPath)
	_ = os.Remove(d.statePath)
}

// publish makes the verified blob durable and renames it into place. Only
// then may a snapshot link point at it.
func (d *blobDownload) publish() error {
	if d.run.opts.Durable {
		if err := d.f.Sync(); err != nil {
			return noSpace(fmt.Errorf("sync %s: %w", d.partPath, err))
		}
	}
	if err := d.f.Close(); err != nil {
		return noSpace(fmt.Errorf("close %s: %w", d.partPath, err))
	}
	d.f = nil
	if err := os.Rename(d.partPath, d.blobPath); err != nil {
		return fmt.Errorf("publish blob %s: %w", d.blobPath, err)
	}
	_ = os.Remove(d.statePath)
	if d.run.opts.Durable {
		_ = syncDir(d.blobPath)
	}
	return nil
}
