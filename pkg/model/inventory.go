package model

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

// verifyRecord lists the files of a snapshot that sglangd hashed, with
// the blob's size and mtime then, so a later change shows. It lives in
// StateDir/verified/<repo folder>/<commit>.json, outside the hub cache.
type verifyRecord struct {
	Commit     string    `json:"commit"`
	VerifiedAt time.Time `json:"verified_at"`
	// Selected is what the last pull selected: a snapshot missing one of
	// them is incomplete.
	Selected []string                `json:"selected"`
	Files    map[string]verifiedBlob `json:"files"`
}

type verifiedBlob struct {
	Etag  string `json:"etag"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
}

func (c *Cache) recordPath(repo, commit string) string {
	return filepath.Join(c.opts.StateDir, "verified", repoFolder(repo), commit+".json")
}

func (c *Cache) readRecord(repo, commit string) *verifyRecord {
	if c.opts.StateDir == "" {
		return nil
	}
	b, err := os.ReadFile(c.recordPath(repo, commit))
	if err != nil {
		return nil
	}
	var rec verifyRecord
	if json.Unmarshal(b, &rec) != nil || rec.Commit != commit {
		return nil
	}
	return &rec
}

// blobStat describes the blob a snapshot file resolves to.
func blobStat(rd repoDir, commit, rel string) (verifiedBlob, error) {
	full := filepath.Join(rd.snapshot(commit), filepath.FromSlash(rel))
	target, err := os.Readlink(full)
	if err != nil {
		return verifiedBlob{}, err
	}
	etag := filepath.Base(target)
	fi, err := os.Stat(full)
	if err != nil {
		return verifiedBlob{}, err
	}
	return verifiedBlob{Etag: etag, Size: fi.Size(), MTime: fi.ModTime().UnixNano()}, nil
}

// writeRecord updates the record of commit: files in hashed were just
// verified; other files keep their old entry if their blob is unchanged,
// unless exact. selected replaces the pull's selection when not nil.
func (c *Cache) writeRecord(repo, commit string, hashed map[string]bool, exact bool, selected []string) error {
	if c.opts.StateDir == "" {
		return nil
	}
	rd := newRepoDir(c.opts.CacheDir, repo)
	files, err := snapshotFiles(rd.snapshot(commit))
	if err != nil {
		return fmt.Errorf("record verification of %s@%s: %w", repo, commit, err)
	}
	old := c.readRecord(repo, commit)
	rec := verifyRecord{Commit: commit, VerifiedAt: time.Now().UTC(), Selected: selected, Files: map[string]verifiedBlob{}}
	if selected == nil && old != nil {
		rec.Selected = old.Selected
	}
	for _, rel := range files {
		st, err := blobStat(rd, commit, rel)
		if err != nil {
			continue
		}
		switch {
		case hashed[rel]:
			rec.Files[rel] = st
		case !exact && old != nil && old.Files[rel] == st:
			rec.Files[rel] = st
		}
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.recordPath(repo, commit), b, 0o644, false)
}

// snapshot describes repo at commit from what is on disk.
func (c *Cache) snapshot(repo, commit string) (*Snapshot, error) {
	rd := newRepoDir(c.opts.CacheDir, repo)
	dir := rd.snapshot(commit)
	files, err := snapshotFiles(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("model %s@%s: %w: not in the cache", repo, commit, errdefs.ErrNotFound)
		}
		return nil, err
	}
	s := &Snapshot{Repo: repo, Commit: commit, Path: dir, Files: len(files)}
	refs, _ := refsFor(rd)
	s.Revisions = refs[commit]
	rec := c.readRecord(repo, commit)
	s.Verified = rec != nil && len(files) > 0
	if rec != nil {
		present := map[string]bool{}
		for _, f := range files {
			present[f] = true
		}
		for _, sel := range rec.Selected {
			if !present[sel] {
				s.Verified = false
			}
		}
	}
	for _, rel := range files {
		st, err := blobStat(rd, commit, rel)
		if err != nil {
			// A copied file (HF_HUB_DISABLE_SYMLINKS) or a dangling link.
			if fi, serr := os.Stat(filepath.Join(dir, filepath.FromSlash(rel))); serr == nil {
				s.Size += fi.Size()
			}
			s.Verified = false
			continue
		}
		s.Size += st.Size
		if rec == nil || rec.Files[rel] != st {
			s.Verified = false
		}
	}
	if s.Verified {
		s.VerifiedAt = rec.VerifiedAt
	}
	return s, nil
}

// List returns every snapshot in the cache, by repo then commit.
func (c *Cache) List(ctx context.Context) ([]Snapshot, error) {
	entries, err := os.ReadDir(c.opts.CacheDir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list model cache %s: %w", c.opts.CacheDir, err)
	}
	var out []Snapshot
	for _, e := range entries {
		repo, ok := repoFromFolder(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		commits, _ := os.ReadDir(newRepoDir(c.opts.CacheDir, repo).snapshot(""))
		for _, cm := range commits {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if !cm.IsDir() {
				continue
			}
			s, err := c.snapshot(repo, cm.Name())
			if err != nil || s.Files == 0 {
				continue // a pull that has linked nothing yet
			}
			out = append(out, *s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Repo != out[j].Repo {
			return out[i].Repo < out[j].Repo
		}
		return out[i].Commit < out[j].Commit
	})
	return out, nil
}

// localCommit resolves revision from the cache alone: a commit, a ref
// file, or (for an empty revision) main or the only snapshot.
func (c *Cache) localCommit(repo, revision string) (string, error) {
	rd := newRepoDir(c.opts.CacheDir, repo)
	if _, err := os.Stat(rd.dir); err != nil {
		return "", fmt.Errorf("model %s: %w: not in the cache %s", repo, errdefs.ErrNotFound, c.opts.CacheDir)
	}
	if isCommit(revision) {
		return revision, nil
	}
	rev := revision
	if rev == "" {
		rev = "main"
	}
	if err := checkRevision(rev); err != nil {
		return "", err
	}
	if b, err := os.ReadFile(rd.ref(rev)); err == nil && isCommit(string(b)) {
		return string(b), nil
	}
	if revision == "" {
		if snaps, _ := os.ReadDir(rd.snapshot("")); len(snaps) == 1 {
			return snaps[0].Name(), nil
		}
	}
	return "", withClass(fmt.Errorf("model %s: revision %q: %w: no such ref in the cache", repo, rev, errdefs.ErrNotFound),
		ErrRevisionNotFound, "name the commit or branch that was pulled (see `sglangctl model list`)")
}

// Problem is one defect Verify found.
type Problem struct {
	Path    string
	Problem string
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Repo, Commit, Path string
	Files              int
	Bytes              int64
	// Problems lists defects; corrupt blobs and their links were removed
	// so SGLang cannot read them, and a pull fetches them again.
	Problems []Problem
}

// OK reports whether the snapshot passed.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Verify re-hashes every file of a snapshot against its blob name (and
// the commit's tree, when cached). Corrupt files are unlinked and their
// blobs deleted, so the next pull fetches them again.
func (c *Cache) Verify(ctx context.Context, repo, revision string) (*VerifyReport, error) {
	if err := checkRepoID(repo); err != nil {
		return nil, err
	}
	commit, err := c.localCommit(repo, revision)
	if err != nil {
		return nil, err
	}
	rd := newRepoDir(c.opts.CacheDir, repo)
	dir := rd.snapshot(commit)
	files, err := snapshotFiles(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("model %s@%s: %w: not in the cache", repo, commit, errdefs.ErrNotFound)
		}
		return nil, err
	}
	tree, _ := readTree(rd, commit)
	rep := &VerifyReport{Repo: repo, Commit: commit, Path: dir, Files: len(files)}
	var mu sync.Mutex
	problem := func(rel, format string, args ...any) {
		mu.Lock()
		rep.Problems = append(rep.Problems, Problem{Path: rel, Problem: fmt.Sprintf(format, args...)})
		mu.Unlock()
	}
	good := map[string]bool{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for _, rel := range files {
		g.Go(func() error {
			ok, n, err := c.verifyFile(gctx, rd, commit, rel, tree, problem)
			if err != nil {
				return err
			}
			mu.Lock()
			rep.Bytes += n
			if ok {
				good[rel] = true
			}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if old := c.readRecord(repo, commit); old != nil {
		for _, rel := range old.Selected {
			if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel))); errors.Is(err, os.ErrNotExist) && !hasProblem(rep, rel) {
				problem(rel, "missing from the snapshot")
			}
		}
	}
	sort.Slice(rep.Problems, func(i, j int) bool { return rep.Problems[i].Path < rep.Problems[j].Path })
	if err := c.writeRecord(repo, commit, good, true, nil); err != nil {
		c.log.Warn("save verification record", zap.Error(err))
	}
	return rep, nil
}

func hasProblem(rep *VerifyReport, rel string) bool {
	for _, p := range rep.Problems {
		if p.Path == rel {
			return true
		}
	}
	return false
}

// verifyFile checks one snapshot entry; it returns whether it is good and
// the bytes hashed.
func (c *Cache) verifyFile(ctx context.Context, rd repoDir, commit, rel string, tree map[string]treeFile,
	problem func(rel, format string, args ...any)) (bool, int64, error) {
	full := filepath.Join(rd.snapshot(commit), filepath.FromSlash(rel))
	want := ""
	if tf, ok := tree[rel]; ok {
		want = tf.BlobID
		if tf.LFSSHA256 != "" {
			want = tf.LFSSHA256
		}
	}
	blob := full
	fi, err := os.Lstat(full)
	if err != nil {
		return false, 0, err
	}
	etag := want
	if fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(full)
		etag = filepath.Base(target)
		if target != linkTarget(rel, etag) {
			problem(rel, "link points to %s, not into this repo's blobs/", target)
			return false, 0, nil
		}
		blob = rd.blob(etag)
		if want != "" && etag != want {
			problem(rel, "links blob %s, but the commit's tree says %s", etag, want)
			return false, 0, nil
		}
	}
	if etag == "" {
		problem(rel, "a copied file with no tree entry to check it against")
		return false, 0, nil
	}
	f, err := os.Open(blob)
	if err != nil {
		problem(rel, "blob %s is missing", etag)
		return false, 0, nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, 0, err
	}
	if tf, ok := tree[rel]; ok && tf.Size != st.Size() {
		problem(rel, "size %d, want %d", st.Size(), tf.Size)
		c.dropCorrupt(full, blob)
		return false, st.Size(), nil
	}
	h, err := newBlobHash(etag, st.Size())
	if err != nil {
		problem(rel, "blob name %s is not a sha256 or git sha1", etag)
		return false, 0, nil
	}
	n, err := io.Copy(h, &ctxReader{ctx: ctx, r: f})
	if err != nil {
		return false, n, err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != etag {
		problem(rel, "content hashes to %s, want %s; removed it: pull again to fetch it", sum, etag)
		c.dropCorrupt(full, blob)
		return false, n, nil
	}
	return true, n, nil
}

// dropCorrupt removes a corrupt file from the snapshot and its blob.
func (c *Cache) dropCorrupt(link, blob string) {
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("remove corrupt snapshot file", zap.String("path", link), zap.Error(err))
	}
	if blob != link {
		if err := os.Remove(blob); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("remove corrupt blob", zap.String("path", blob), zap.Error(err))
		}
	}
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// Remove deletes repo from the cache: one commit's snapshot (and the blobs
// only it used) when revision is set, else the whole repo with its locks,
// partial downloads and records.
func (c *Cache) Remove(ctx context.Context, repo, revision string) error {
	if err := checkRepoID(repo); err != nil {
		return err
	}
	if c.isBusy(repo) {
		return withClass(fmt.Errorf("remove %s: %w", repo, ErrBusy), errdefs.ErrConflict, "wait for the pull to finish, then remove it")
	}
	rd := newRepoDir(c.opts.CacheDir, repo)
	if _, err := os.Stat(rd.dir); err != nil {
		return fmt.Errorf("model %s: %w: not in the cache %s", repo, errdefs.ErrNotFound, c.opts.CacheDir)
	}
	if revision == "" {
		return c.removeRepo(rd)
	}
	commit, err := c.localCommit(repo, revision)
	if err != nil {
		return err
	}
	if _, err := os.Stat(rd.snapshot(commit)); err != nil {
		return fmt.Errorf("model %s@%s: %w: not in the cache", repo, commit, errdefs.ErrNotFound)
	}
	if err := os.RemoveAll(rd.snapshot(commit)); err != nil {
		return fmt.Errorf("remove %s@%s: %w", repo, commit, err)
	}
	refs, _ := refsFor(rd)
	for _, ref := range refs[commit] {
		_ = os.Remove(rd.ref(ref))
	}
	_ = os.Remove(rd.tree(commit))
	if c.opts.StateDir != "" {
		_ = os.Remove(c.recordPath(repo, commit))
	}
	left, _ := os.ReadDir(rd.snapshot(""))
	if len(left) == 0 {
		return c.removeRepo(rd)
	}
	return c.collectBlobs(ctx, rd)
}

func (c *Cache) removeRepo(rd repoDir) error {
	if err := os.RemoveAll(rd.dir); err != nil {
		return fmt.Errorf("remove %s: %w", rd.dir, err)
	}
	_ = os.RemoveAll(rd.lockDir())
	if c.opts.StateDir != "" {
		_ = os.RemoveAll(filepath.Join(c.opts.StateDir, "verified", repoFolder(rd.repo)))
	}
	c.log.Info("removed model", zap.String("repo", rd.repo))
	return nil
}

// collectBlobs deletes finished blobs no snapshot links to.
func (c *Cache) collectBlobs(ctx context.Context, rd repoDir) error {
	used := map[string]bool{}
	err := filepath.WalkDir(rd.snapshot(""), func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if de.Type()&os.ModeSymlink != 0 {
			if t, err := os.Readlink(p); err == nil {
				used[filepath.Base(t)] = true
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan snapshots of %s: %w", rd.repo, err)
	}
	blobs, _ := os.ReadDir(rd.blobs())
	for _, b := range blobs {
		name := b.Name()
		if strings.Contains(name, ".") || used[name] {
			continue // partial downloads and foreign temporaries stay
		}
		if err := os.Remove(filepath.Join(rd.blobs(), name)); err != nil {
			return fmt.Errorf("remove blob %s: %w", name, err)
		}
	}
	return nil
}

// checkWritable creates dir if needed and proves a file can be written.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".sglangd-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
