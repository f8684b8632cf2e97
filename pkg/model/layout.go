package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
)

// The cache layout huggingface_hub reads (hf-hub-protocol §6):
//
//	<cache>/.locks/models--<org>--<name>/<etag>.lock
//	<cache>/models--<org>--<name>/blobs/<etag>
//	<cache>/models--<org>--<name>/refs/<rev>            commit, no newline
//	<cache>/models--<org>--<name>/snapshots/<commit>/<path> -> ../../blobs/<etag>
//	<cache>/models--<org>--<name>/trees/<commit>.json
const (
	repoPrefix = "models--"
	locksDir   = ".locks"
)

var repoIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$`)

// checkRepoID rejects ids that are not org/name (or a bare legacy name).
func checkRepoID(repo string) error {
	if !repoIDRe.MatchString(repo) || strings.Contains(repo, "..") || strings.Contains(repo, "--") {
		return fmt.Errorf("repo %q: %w: expected a Hugging Face repo id such as Qwen/Qwen2.5-7B-Instruct", repo, errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkRevision rejects revisions that would escape refs/.
func checkRevision(rev string) error {
	if rev == "" {
		return fmt.Errorf("revision: %w: expected a branch, tag or commit, got empty", errdefs.ErrInvalidArgument)
	}
	if err := checkRelPath(rev); err != nil {
		return fmt.Errorf("revision %q: %w: expected a branch, tag or commit", rev, errdefs.ErrInvalidArgument)
	}
	return nil
}

// repoFolder is the repo's directory name: models--org--name.
func repoFolder(repo string) string { return repoPrefix + strings.ReplaceAll(repo, "/", "--") }

// repoFromFolder inverts repoFolder; ok is false for other entries.
func repoFromFolder(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, repoPrefix)
	if !ok || rest == "" {
		return "", false
	}
	return strings.ReplaceAll(rest, "--", "/"), true
}

// repoDir is one repository's folder in the cache.
type repoDir struct {
	root string // the cache
	repo string
	dir  string
}

func newRepoDir(root, repo string) repoDir {
	return repoDir{root: root, repo: repo, dir: filepath.Join(root, repoFolder(repo))}
}

func (r repoDir) blobs() string                 { return filepath.Join(r.dir, "blobs") }
func (r repoDir) blob(etag string) string       { return filepath.Join(r.dir, "blobs", etag) }
func (r repoDir) snapshot(commit string) string { return filepath.Join(r.dir, "snapshots", commit) }
func (r repoDir) ref(rev string) string         { return filepath.Join(r.dir, "refs", filepath.FromSlash(rev)) }
func (r repoDir) tree(commit string) string     { return filepath.Join(r.dir, "trees", commit+".json") }
func (r repoDir) lockDir() string               { return filepath.Join(r.root, locksDir, repoFolder(r.repo)) }
func (r repoDir) lock(etag string) string       { return filepath.Join(r.lockDir(), etag+".lock") }

// checkRelPath rejects repository paths that are absolute, use drive or
// UNC forms, contain "." or ".." segments, empty segments or NUL.
func checkRelPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("path contains NUL")
	case strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`):
		return fmt.Errorf("absolute path")
	case len(p) >= 2 && p[1] == ':' && (p[0] >= 'A' && p[0] <= 'Z' || p[0] >= 'a' && p[0] <= 'z'):
		return fmt.Errorf("drive path")
	}
	for _, seg := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if seg == "." || seg == ".." {
			return fmt.Errorf("path has a %q segment", seg)
		}
	}
	if strings.Contains(p, "//") || strings.HasSuffix(p, "/") {
		return fmt.Errorf("path has an empty segment")
	}
	return nil
}

// snapshotPath joins a repository path onto the snapshot directory and
// proves the result stays inside it.
func snapshotPath(snapDir, rel string) (string, error) {
	if err := checkRelPath(rel); err != nil {
		return "", withClass(fmt.Errorf("file %q: %v: %w", rel, err, ErrUnsafePath), errdefs.ErrFailedPrecondition,
			"the repository lists a file outside its own folder; refusing to download it. Report the repo, or exclude the file with --exclude")
	}
	full := filepath.Join(snapDir, filepath.FromSlash(rel))
	r, err := filepath.Rel(snapDir, full)
	if err != nil || r == "." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || r == ".." || filepath.IsAbs(r) {
		return "", withClass(fmt.Errorf("file %q escapes the snapshot: %w", rel, ErrUnsafePath), errdefs.ErrFailedPrecondition,
			"the repository lists a file outside its own folder; refusing to download it")
	}
	return full, nil
}

// linkTarget is the relative symlink target from snapshots/<commit>/<rel>
// to blobs/<etag>: one "../" per directory level plus two.
func linkTarget(rel, etag string) string {
	depth := strings.Count(path.Clean(rel), "/")
	return strings.Repeat("../", depth+2) + "blobs/" + etag
}

// linkSnapshot points snapshots/<commit>/<rel> at blobs/<etag>, replacing
// a wrong entry atomically. The blob must already be verified and in
// place: a link is the only way a file becomes visible to SGLang.
func linkSnapshot(snapDir, rel, etag string) error {
	full, err := snapshotPath(snapDir, rel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return fmt.Errorf("create snapshot directory: %w", err)
	}
	target := linkTarget(rel, etag)
	if cur, err := os.Readlink(full); err == nil && cur == target {
		return nil
	}
	tmp := filepath.Join(filepath.Dir(full), ".sglangd-link-"+etag[:min(12, len(etag))]+"-"+filepath.Base(full))
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link %s: %w", full, err)
	}
	if err := os.Rename(tmp, full); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("link %s: %w", full, err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary name in the same directory,
// optionally fsyncs it, and renames it over path.
func writeFileAtomic(name string, data []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if durable {
		return syncDir(name)
	}
	return nil
}

// syncDir fsyncs the directory holding name, making a rename durable.
func syncDir(name string) error {
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeRef records rev -> commit with no trailing newline: with one,
// huggingface_hub finds nothing.
func writeRef(r repoDir, rev, commit string) error {
	if rev == commit {
		return nil
	}
	if err := checkRevision(rev); err != nil {
		return err
	}
	return writeFileAtomic(r.ref(rev), []byte(commit), 0o644, true)
}

// treeFile is one entry of trees/<commit>.json. Fields are in key order
// because huggingface_hub writes it with sort_keys.
type treeFile struct {
	BlobID    string `json:"blob_id"`
	LFSSHA256 string `json:"lfs_sha256,omitempty"`
	LFSSize   int64  `json:"lfs_size,omitempty"`
	Size      int64  `json:"size"`
	XetHash   string `json:"xet_hash,omitempty"`
}

type treeDoc struct {
	Files         map[string]treeFile `json:"files"`
	FormatVersion int                 `json:"format_version"`
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// writeTree records the whole commit's listing as huggingface_hub >= 1.22
// does (format_version 1, sorted keys, indent 1), so offline loads know
// which files the commit has.
func writeTree(r repoDir, commit string, files []remoteFile) error {
	doc := treeDoc{Files: make(map[string]treeFile, len(files)), FormatVersion: 1}
	for _, f := range files {
		tf := treeFile{BlobID: f.BlobID, Size: f.Size}
		if f.LFSSHA256 != "" {
			tf.LFSSHA256, tf.LFSSize = f.LFSSHA256, f.LFSSize
		}
		if hex64.MatchString(f.XetHash) {
			tf.XetHash = f.XetHash
		}
		doc.Files[f.Path] = tf
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return writeFileAtomic(r.tree(commit), bytes.TrimRight(buf.Bytes(), "\n"), 0o644, true)
}

// readTree reads trees/<commit>.json, if any.
func readTree(r repoDir, commit string) (map[string]treeFile, error) {
	b, err := os.ReadFile(r.tree(commit))
	if err != nil {
		return nil, err
	}
	var doc treeDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", r.tree(commit), err)
	}
	return doc.Files, nil
}

// refsFor returns the refs (sorted) that point at commit.
func refsFor(r repoDir) (map[string][]string, error) {
	out := map[string][]string{}
	base := filepath.Join(r.dir, "refs")
	err := filepath.WalkDir(base, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(base, p)
		c := string(b)
		out[c] = append(out[c], filepath.ToSlash(rel))
		return nil
	})
	for _, v := range out {
		sort.Strings(v)
	}
	return out, err
}
