// Package hubtest is a Hugging Face Hub on loopback for tests and
// benchmarks: the revision, tree (paginated with Link headers) and resolve
// endpoints of hf-hub-protocol.md, with LFS files redirected to a separate
// "CDN" listener on another address (127.0.0.2), so a client that leaks
// its token across hosts is caught. It answers like the Hub does (ETag,
// X-Linked-Etag, X-Linked-Size, X-Repo-Commit, X-Error-Code, Range with
// Content-Range), gates and hides repos, and injects faults on demand:
// connection resets, 5xx, 429 with Retry-After, stalls, truncated and
// corrupted bodies, ignored Range headers and expired CDN URLs. It counts
// the bytes it serves per file, so tests can prove what was re-fetched.
//
// Generated files are served from a small repeating pattern, so a
// multi-GB repo costs no memory.
package hubtest

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// File is one file of a repo: Data, or Size bytes generated from Seed.
type File struct {
	Path string
	Data []byte
	Size int64
	Seed uint64
	// LFS files are named by sha256 and served from the CDN; others by
	// their git blob sha1, from the Hub itself.
	LFS bool
}

// Repo is a model repository with one commit.
type Repo struct {
	ID    string
	Files []File
	// Branches point at the commit; default ["main"].
	Branches []string
	// Private repos need the server's token; Gated ones need it and
	// Approved; Disabled ones answer 403 "disabled".
	Private, Gated, Approved, Disabled bool
	// RenamedFrom answers the old id with a relative redirect.
	RenamedFrom string
}

// Options configure a Server.
type Options struct {
	// Token is the one valid token; any other Authorization is rejected.
	Token string
	// PageSize is the tree page size; default 1000.
	PageSize int
	// Throttle caps each response body at this many bytes per second.
	Throttle int64
	// URLTTL is the lifetime of CDN URLs; default one hour.
	URLTTL time.Duration
}

// Target selects which requests a fault applies to.
type Target int

// Fault targets.
const (
	// TargetData is file content: CDN GETs and Hub-served file GETs.
	TargetData Target = iota
	// TargetResolve is the resolve HEAD.
	TargetResolve
	// TargetAPI is the revision and tree calls.
	TargetAPI
)

// FaultKind is what goes wrong.
type FaultKind int

// Faults.
const (
	// Reset sends AfterBytes of the body, then resets the connection.
	Reset FaultKind = iota
	// Status answers Status (500, 503, 429...) with RetryAfter/RateLimit.
	Status
	// Stall sends AfterBytes, then nothing until the client gives up.
	Stall
	// Truncate sends AfterBytes, then closes the connection cleanly.
	Truncate
	// Corrupt flips the byte at body offset AfterBytes.
	Corrupt
	// IgnoreRange answers 200 with the whole file.
	IgnoreRange
	// Expire invalidates every CDN URL issued so far (the request gets
	// 403 "Request has expired"), as an hour-old presigned URL would.
	Expire
)

// Fault is an injected failure, applied to the next Times matching
// requests.
type Fault struct {
	Kind   FaultKind
	Target Target
	// Path limits the fault to one file ("" = any).
	Path string
	// Times is how many requests get it; 0 means 1, -1 means forever.
	Times      int
	AfterBytes int64
	Status     int
	RetryAfter string
	RateLimit  string
	// MinOffset applies the fault only to ranges starting at or after it.
	MinOffset int64
}

// FileStats are the counters of one file.
type FileStats struct {
	// BytesServed is body bytes written to clients (all requests).
	BytesServed int64
	Gets, Heads int
	// Ranges lists the Range headers of the GETs.
	Ranges []string
}

type file struct {
	File
	size   int64
	oid    string // git blob sha1
	sha256 string
	src    io.ReaderAt
}

func (f *file) etag() string {
	if f.LFS {
		return f.sha256
	}
	return f.oid
}

type repo struct {
	Repo
	commit string
	files  []*file
	byPath map[string]*file
}

// Server is the fake Hub. Create it with New; Close it when done.
type Server struct {
	// URL is the Hub endpoint (HF_ENDPOINT), CDNURL the data host.
	URL, CDNURL string

	opts     Options
	hub, cdn *http.Server
	hubLn    net.Listener
	cdnLn    net.Listener
	throttle atomic.Int64
	urlGen   atomic.Int64

	mu        sync.Mutex
	repos     map[string]*repo // by id, and by RenamedFrom
	blobs     map[string]*file // by etag
	faults    []*Fault
	stats     map[string]*FileStats // by path
	authLeaks int
	log       []string
}

// New starts the Hub on 127.0.0.1 and the CDN on 127.0.0.2.
func New(opts Options) (*Server, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	if opts.URLTTL <= 0 {
		opts.URLTTL = time.Hour
	}
	s := &Server{opts: opts, repos: map[string]*repo{}, blobs: map[string]*file{}, stats: map[string]*FileStats{}}
	s.throttle.Store(opts.Throttle)
	var err error
	if s.hubLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	if s.cdnLn, err = net.Listen("tcp", "127.0.0.2:0"); err != nil {
		s.hubLn.Close()
		return nil, fmt.Errorf("listen on 127.0.0.2 (the fake CDN must be another host): %w", err)
	}
	s.URL = "http://" + s.hubLn.Addr().String()
	s.CDNURL = "http://" + s.cdnLn.Addr().String()
	s.hub = &http.Server{Handler: http.HandlerFunc(s.serveHub), ReadHeaderTimeout: 10 * time.Second}
	s.cdn = &http.Server{Handler: http.HandlerFunc(s.serveCDN), ReadHeaderTimeout: 10 * time.Second}
	go s.hub.Serve(s.hubLn)
	go s.cdn.Serve(s.cdnLn)
	return s, nil
}

// Close stops both listeners and every connection.
func (s *Server) Close() {
	s.hub.Close()
	s.cdn.Close()
}

// SetThrottle changes the per-response byte rate (0 = unlimited).
func (s *Server) SetThrottle(bytesPerSecond int64) { s.throttle.Store(bytesPerSecond) }

// AddRepo publishes a repo and returns its commit.
func (s *Server) AddRepo(r Repo) (string, error) {
	if len(r.Branches) == 0 {
		r.Branches = []string{"main"}
	}
	rp := &repo{Repo: r, byPath: map[string]*file{}}
	h := sha1.New()
	io.WriteString(h, r.ID)
	for _, f := range r.Files {
		ff := &file{File: f}
		switch {
		case f.Data != nil:
			ff.size = int64(len(f.Data))
			ff.src = bytesReaderAt(f.Data)
		default:
			ff.size = f.Size
			ff.src = newPattern(f.Seed, f.Size)
		}
		var err error
		if ff.oid, ff.sha256, err = digests(ff.src, ff.size); err != nil {
			return "", err
		}
		fmt.Fprintf(h, "\x00%s\x00%s", f.Path, ff.oid)
		rp.files = append(rp.files, ff)
		rp.byPath[f.Path] = ff
	}
	rp.commit = hex.EncodeToString(h.Sum(nil))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[r.ID] = rp
	for _, f := range rp.files {
		s.blobs[f.etag()] = f
	}
	return rp.commit, nil
}

// Content returns a file's bytes (generated files are materialised: keep
// them small).
func (s *Server) Content(repoID, path string) []byte {
	s.mu.Lock()
	rp := s.repos[repoID]
	s.mu.Unlock()
	f := rp.byPath[path]
	b := make([]byte, f.size)
	f.src.ReadAt(b, 0)
	return b
}

// Etag returns the blob name of a file (sha256 or git sha1).
func (s *Server) Etag(repoID, path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repos[repoID].byPath[path].etag()
}

// Inject queues a fault.
func (s *Server) Inject(f Fault) {
	if f.Times == 0 {
		f.Times = 1
	}
	s.mu.Lock()
	s.faults = append(s.faults, &f)
	s.mu.Unlock()
}

// PendingFaults counts faults not yet used up.
func (s *Server) PendingFaults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.faults {
		if f.Times != 0 {
			n++
		}
	}
	return n
}

// Stats returns the counters of a file path.
func (s *Server) Stats(path string) FileStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stats[path]; st != nil {
		c := *st
		c.Ranges = append([]string(nil), st.Ranges...)
		return c
	}
	return FileStats{}
}

// AuthLeaks counts CDN requests that carried an Authorization header.
func (s *Server) AuthLeaks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authLeaks
}

// Log returns one line per request, oldest first.
func (s *Server) Log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *Server) stat(path string) *FileStats {
	st := s.stats[path]
	if st == nil {
		st = &FileStats{}
		s.stats[path] = st
	}
	return st
}

func (s *Server) logf(format string, args ...any) {
	s.mu.Lock()
	s.log = append(s.log, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// takeFault returns the first pending fault for target and path whose
// conditions hold, using one of its Times.
func (s *Server) takeFault(target Target, path string, start int64, kinds ...FaultKind) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Times == 0 || f.Target != target || (f.Path != "" && f.Path != path) || start < f.MinOffset {
			continue
		}
		if len(kinds) > 0 && !containsKind(kinds, f.Kind) {
			continue
		}
		if f.Kind == Expire {
			st := s.stats[path]
			if st == nil || st.BytesServed < f.AfterBytes {
				continue
			}
		}
		if f.Times > 0 {
			f.Times--
		}
		c := *f
		return &c
	}
	return nil
}

func containsKind(ks []FaultKind, k FaultKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// hubError answers like the Hub: status, X-Error-Code, X-Error-Message,
// a request id and a JSON body.
func hubError(w http.ResponseWriter, status int, code, msg string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	w.Header().Set("X-Request-Id", "Root=1-hubtest-"+strconv.Itoa(rand.IntN(1<<30)))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// authorize applies the Hub's access rules; it writes the error and
// returns false when access is refused.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, rp *repo) bool {
	auth := r.Header.Get("Authorization")
	tokenOK := false
	if auth != "" {
		if s.opts.Token == "" || auth != "Bearer "+s.opts.Token {
			hubError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
			return false
		}
		tokenOK = true
	}
	switch {
	case rp == nil || (rp.Private && !tokenOK):
		if tokenOK {
			hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found")
		} else {
			hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found")
		}
		return false
	case rp.Disabled:
		hubError(w, http.StatusForbidden, "", "Access to this resource is disabled.")
		return false
	case rp.Gated && !tokenOK:
		hubError(w, http.StatusUnauthorized, "GatedRepo", "Access to model "+rp.ID+" is restricted. You must have access to it and be authenticated to access it. Please log in.")
		return false
	case rp.Gated && !rp.Approved:
		hubError(w, http.StatusForbidden, "GatedRepo", "Access to model "+rp.ID+" is restricted and you are not in the authorized list. Visit https://huggingface.co/"+rp.ID+" to ask for access.")
		return false
	}
	return true
}

func (s *Server) lookup(id string) (*repo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rp, ok := s.repos[id]; ok {
		return rp, false
	}
	for _, rp := range s.repos {
		if rp.RenamedFrom == id {
			return rp, true
		}
	}
	return nil, false
}

func (rp *repo) commitOf(rev string) (string, bool) {
	if rev == rp.commit {
		return rp.commit, true
	}
	for _, b := range rp.Branches {
		if b == rev {
			return rp.commit, true
		}
	}
	return "", false
}

// serveHub routes /api/models/... and /<repo>/resolve/... by hand: repo
// ids contain a slash and revisions may contain escaped ones.
func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	s.logf("hub %s %s range=%q auth=%v", r.Method, r.URL.RequestURI(), r.Header.Get("Range"), r.Header.Get("Authorization") != "")
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	for i := range segs {
		segs[i], _ = url.PathUnescape(segs[i])
	}
	switch {
	case r.URL.Path == "/":
		w.WriteHeader(http.StatusOK)
	case len(segs) >= 6 && segs[0] == "api" && segs[1] == "models" && (segs[4] == "revision" || segs[4] == "tree"):
		if f := s.takeFault(TargetAPI, "", 0, Status); f != nil {
			writeStatusFault(w, f)
			return
		}
		id := segs[2] + "/" + segs[3]
		rp, _ := s.lookup(id)
		if !s.authorize(w, r, rp) {
			return
		}
		commit, ok := rp.commitOf(segs[5])
		if !ok {
			hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+segs[5])
			return
		}
		if segs[4] == "revision" {
			s.serveRevision(w, rp, commit)
		} else {
			s.serveTree(w, r, rp, commit)
		}
	case len(segs) >= 5 && segs[2] == "resolve":
		s.serveResolve(w, r, segs[0]+"/"+segs[1], segs[3], strings.Join(segs[4:], "/"))
	default:
		hubError(w, http.StatusNotFound, "", "Not Found")
	}
}

func writeStatusFault(w http.ResponseWriter, f *Fault) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.RateLimit != "" {
		w.Header().Set("RateLimit", f.RateLimit)
	}
	msg := http.StatusText(f.Status)
	if f.Status == http.StatusTooManyRequests {
		msg = "You have been rate-limited; you can retry this action in about 1 second."
	}
	hubError(w, f.Status, "", msg)
}

func (s *Server) serveRevision(w http.ResponseWriter, rp *repo, commit string) {
	type sibling struct {
		RFilename string `json:"rfilename"`
	}
	body := struct {
		ID       string    `json:"id"`
		SHA      string    `json:"sha"`
		Siblings []sibling `json:"siblings"`
	}{ID: rp.ID, SHA: commit}
	for _, f := range rp.files {
		body.Siblings = append(body.Siblings, sibling{f.Path})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

type treeLFS struct {
	OID         string `json:"oid"`
	Size        int64  `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

type treeItem struct {
	Type string   `json:"type"`
	OID  string   `json:"oid"`
	Size int64    `json:"size"`
	Path string   `json:"path"`
	LFS  *treeLFS `json:"lfs,omitempty"`
}

// serveTree lists the commit recursively, directories included, one page
// at a time with a Link header to the next.
func (s *Server) serveTree(w http.ResponseWriter, r *http.Request, rp *repo, commit string) {
	var items []treeItem
	dirs := map[string]bool{}
	for _, f := range rp.files {
		for d := parentDir(f.Path); d != "" && !dirs[d]; d = parentDir(d) {
			dirs[d] = true
			items = append(items, treeItem{Type: "directory", OID: strings.Repeat("d", 40), Path: d})
		}
		it := treeItem{Type: "file", OID: f.oid, Size: f.size, Path: f.Path}
		if f.LFS {
			// The git blob of an LFS file is its pointer; size is the real one.
			it.LFS = &treeLFS{OID: f.sha256, Size: f.size, PointerSize: 134}
		}
		items = append(items, it)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Path < items[j].Path })
	cursor, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	end := min(cursor+s.opts.PageSize, len(items))
	if cursor > len(items) {
		cursor = len(items)
	}
	if end < len(items) {
		q := r.URL.Query()
		q.Set("cursor", strconv.Itoa(end))
		next := *r.URL
		next.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, s.URL, next.RequestURI()))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(items[cursor:end])
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// serveResolve answers HEAD and GET of /<repo>/resolve/<rev>/<path>: LFS
// files redirect to the CDN, others are served here.
func (s *Server) serveResolve(w http.ResponseWriter, r *http.Request, id, rev, path string) {
	rp, renamed := s.lookup(id)
	if renamed {
		// A renamed repo answers with a relative redirect, query kept.
		loc := "/" + rp.ID + "/resolve/" + url.PathEscape(rev) + "/" + path
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, loc, http.StatusTemporaryRedirect)
		return
	}
	if r.Method == http.MethodHead {
		if f := s.takeFault(TargetResolve, path, 0, Status); f != nil {
			writeStatusFault(w, f)
			return
		}
	}
	if !s.authorize(w, r, rp) {
		return
	}
	commit, ok := rp.commitOf(rev)
	if !ok {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev)
		return
	}
	f := rp.byPath[path]
	if f == nil {
		hubError(w, http.StatusNotFound, "EntryNotFound", path+" does not exist on \""+rev+"\"")
		return
	}
	s.mu.Lock()
	if r.Method == http.MethodHead {
		s.stat(path).Heads++
	}
	s.mu.Unlock()
	h := w.Header()
	h.Set("X-Repo-Commit", commit)
	h.Set("Accept-Ranges", "bytes")
	if f.LFS {
		h.Set("X-Linked-Etag", `"`+f.sha256+`"`)
		h.Set("X-Linked-Size", strconv.FormatInt(f.size, 10))
		h.Set("ETag", `"`+f.oid+`"`)
		gen := s.urlGen.Load()
		exp := time.Now().Add(s.opts.URLTTL).Unix()
		q := url.Values{"X-Amz-Expires": {strconv.Itoa(int(s.opts.URLTTL.Seconds()))}, "exp": {strconv.FormatInt(exp, 10)},
			"gen": {strconv.FormatInt(gen, 10)}, "path": {path}, "X-Amz-Signature": {hex.EncodeToString([]byte(f.sha256[:8]))}}
		h.Set("Location", s.CDNURL+"/repos/"+f.sha256[:2]+"/"+f.sha256+"?"+q.Encode())
		w.WriteHeader(http.StatusFound)
		return
	}
	h.Set("ETag", `"`+f.oid+`"`)
	s.serveContent(w, r, f, path)
}

// serveCDN serves presigned blob URLs. It never wants a token.
func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	s.logf("cdn %s %s range=%q auth=%v", r.Method, r.URL.RequestURI(), r.Header.Get("Range"), r.Header.Get("Authorization") != "")
	q := r.URL.Query()
	path := q.Get("path")
	if r.Header.Get("Authorization") != "" {
		s.mu.Lock()
		s.authLeaks++
		s.mu.Unlock()
		// S3 refuses a second authentication mechanism.
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>")
		return
	}
	etag := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	s.mu.Lock()
	f := s.blobs[etag]
	s.mu.Unlock()
	if f == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	start, _, _ := parseRange(r.Header.Get("Range"), f.size)
	if s.takeFault(TargetData, path, start, Expire) != nil {
		s.urlGen.Add(1)
	}
	exp, _ := strconv.ParseInt(q.Get("exp"), 10, 64)
	gen, _ := strconv.ParseInt(q.Get("gen"), 10, 64)
	if time.Now().Unix() > exp || gen != s.urlGen.Load() {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
		return
	}
	s.serveContent(w, r, f, path)
}

// parseRange parses a single "bytes=a-b" or "bytes=a-" range.
func parseRange(h string, size int64) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, size - 1, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, size - 1, false
	}
	var err error
	if start, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, size - 1, false
	}
	end = size - 1
	if b != "" {
		if end, err = strconv.ParseInt(b, 10, 64); err != nil {
			return 0, size - 1, false
		}
		end = min(end, size-1)
	}
	return start, end, true
}

// serveContent answers a GET or HEAD of file content, honouring Range and
// applying data faults.
func (s *Server) serveContent(w http.ResponseWriter, r *http.Request, f *file, path string) {
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(f.size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	rangeHdr := r.Header.Get("Range")
	start, end, ranged := parseRange(rangeHdr, f.size)
	s.mu.Lock()
	st := s.stat(path)
	st.Gets++
	st.Ranges = append(st.Ranges, rangeHdr)
	s.mu.Unlock()
	fault := s.takeFault(TargetData, path, start, Reset, Status, Stall, Truncate, Corrupt, IgnoreRange)
	if fault != nil && fault.Kind == Status {
		writeStatusFault(w, fault)
		return
	}
	if fault != nil && fault.Kind == IgnoreRange {
		ranged = false
	}
	if ranged && (start > end || start >= f.size) {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", f.size))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	status := http.StatusOK
	if ranged {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, f.size))
	} else {
		start, end = 0, f.size-1
	}
	h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	w.WriteHeader(status)
	s.writeBody(w, r, f, path, start, end, fault)
}

// writeBody streams [start,end] of f, counting bytes and applying the
// fault at its byte offset.
func (s *Server) writeBody(w http.ResponseWriter, r *http.Request, f *file, path string, start, end int64, fault *Fault) {
	chunk := int64(256 << 10)
	throttle := s.throttle.Load()
	if throttle > 0 {
		chunk = min(chunk, max(throttle/20, 1024))
	}
	buf := make([]byte, chunk)
	flusher, _ := w.(http.Flusher)
	began := time.Now()
	var sent int64
	for pos := start; pos <= end; {
		n := min(chunk, end-pos+1)
		if fault != nil && fault.Kind != Corrupt && sent < fault.AfterBytes {
			n = min(n, fault.AfterBytes-sent)
		}
		if fault != nil && fault.Kind != Corrupt && sent == fault.AfterBytes {
			if flusher != nil {
				flusher.Flush()
			}
			s.breakConn(w, r, fault)
			return
		}
		if _, err := f.src.ReadAt(buf[:n], pos); err != nil && !errors.Is(err, io.EOF) {
			panic(http.ErrAbortHandler)
		}
		if fault != nil && fault.Kind == Corrupt && sent <= fault.AfterBytes && fault.AfterBytes < sent+n {
			buf[fault.AfterBytes-sent] ^= 0xff
		}
		m, err := w.Write(buf[:n])
		s.mu.Lock()
		s.stat(path).BytesServed += int64(m)
		s.mu.Unlock()
		if err != nil {
			return
		}
		pos += n
		sent += n
		if throttle > 0 {
			due := began.Add(time.Duration(float64(sent) / float64(throttle) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				if flusher != nil {
					flusher.Flush()
				}
				select {
				case <-r.Context().Done():
					return
				case <-time.After(d):
				}
			}
		}
	}
}

// breakConn carries out a mid-body fault.
func (s *Server) breakConn(w http.ResponseWriter, r *http.Request, f *Fault) {
	switch f.Kind {
	case Stall:
		<-r.Context().Done()
	case Reset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case Truncate:
		panic(http.ErrAbortHandler)
	}
}

// digests returns the git blob sha1 and the sha256 of a source.
func digests(src io.ReaderAt, size int64) (oid, sum string, err error) {
	h1 := sha1.New()
	fmt.Fprintf(h1, "blob %d\x00", size)
	h2 := sha256.New()
	if _, err := io.Copy(io.MultiWriter(h1, h2), io.NewSectionReader(src, 0, size)); err != nil {
		return "", "", err
	}
	return hex.EncodeToString(h1.Sum(nil)), hex.EncodeToString(h2.Sum(nil)), nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// pattern generates size bytes from a 1 MiB random block; each block
// copy is stamped with its index so no two MiB are equal.
type pattern struct {
	block []byte
	size  int64
}

const patternBlock = 1 << 20

func newPattern(seed uint64, size int64) *pattern {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, patternBlock)
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return &pattern{block: b, size: size}
}

// Generate returns the content of a generated file (for tests comparing
// bytes; keep size small).
func Generate(seed uint64, size int64) []byte {
	p := newPattern(seed, size)
	b := make([]byte, size)
	p.ReadAt(b, 0)
	return b
}

func (p *pattern) ReadAt(out []byte, off int64) (int, error) {
	n := 0
	for n < len(out) && off < p.size {
		blk := off / patternBlock
		in := off % patternBlock
		m := copy(out[n:], p.block[in:min(int64(patternBlock), in+p.size-off)])
		// Stamp the block index over the first 8 bytes of each block.
		for k := int64(0); k < 8; k++ {
			if pos := blk*patternBlock + k; pos >= off && pos < off+int64(m) {
				out[n+int(pos-off)] ^= byte(blk >> (8 * k))
			}
		}
		n += m
		off += int64(m)
	}
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

// Stop aborts in-flight responses on both listeners and waits up to d
// for handlers to return.
func (s *Server) Stop(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	s.hub.Shutdown(ctx)
	s.cdn.Shutdown(ctx)
}
