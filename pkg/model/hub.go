package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap"
)

// hub is a client of the Hugging Face Hub protocol (hf-hub-protocol.md):
// revision pinning, tree listing and resolve HEADs. It follows redirects
// itself so that the token only ever goes to the endpoint's own origin.
type hub struct {
	endpoint *url.URL // without trailing slash
	token    string
	ua       string
	hc       *http.Client
	log      *zap.Logger
	retry    retryPolicy
}

// retryPolicy is huggingface_hub's: exponential backoff with jitter on
// network errors, 408, 429 and 5xx, honouring Retry-After and RateLimit.
type retryPolicy struct {
	retries int
	base    time.Duration
	max     time.Duration
	// maxServerWait caps a wait the server asked for.
	maxServerWait time.Duration
}

// delay returns how long to wait before retry number attempt (0-based),
// preferring the wait the server asked for.
func (p retryPolicy) delay(attempt int, h http.Header) time.Duration {
	if d := serverWait(h); d > 0 {
		return min(d, p.maxServerWait)
	}
	d := p.base << min(attempt, 16)
	if d > p.max || d <= 0 {
		d = p.max
	}
	// Full jitter on the upper half keeps parallel parts from retrying in
	// lockstep against a struggling server.
	return d/2 + rand.N(d/2+1)
}

var rateLimitReset = regexp.MustCompile(`(?:^|;)\s*t\s*=\s*(\d+)`)

// serverWait reads RateLimit ("<bucket>";r=0;t=<s>, wait t+1 s as
// huggingface_hub does) and Retry-After (seconds or an HTTP date).
func serverWait(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	if m := rateLimitReset.FindStringSubmatch(h.Get("RateLimit")); m != nil {
		if s, err := strconv.Atoi(m[1]); err == nil {
			return time.Duration(s+1) * time.Second
		}
	}
	ra := strings.TrimSpace(h.Get("Retry-After"))
	if ra == "" {
		return 0
	}
	if s, err := strconv.Atoi(ra); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(ra); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// sameOrigin reports whether u is served by the endpoint's origin, the only
// place the token may go.
func (h *hub) sameOrigin(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, h.endpoint.Scheme) && strings.EqualFold(u.Host, h.endpoint.Host)
}

// newRequest builds a request with the headers every Hub call carries.
// Authorization is set only for the endpoint's origin: a host change (a
// CDN, a mirror's data host, a redirect to huggingface.co) drops it.
func (h *hub) newRequest(ctx context.Context, method string, u *url.URL) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", h.ua)
	if h.token != "" && h.sameOrigin(u) {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	return req, nil
}

// opInfo names what a request is for, for errors.
type opInfo struct {
	op, repo, rev, path string
}

// hubError builds a classified error from a non-2xx answer and closes its
// body.
func (h *hub) hubError(resp *http.Response, oi opInfo) *HubError {
	defer resp.Body.Close()
	e := &HubError{Op: oi.op, Repo: oi.repo, Revision: oi.rev, Path: oi.path, Host: resp.Request.URL.Host,
		Status: resp.StatusCode, Code: resp.Header.Get("X-Error-Code"), Message: resp.Header.Get("X-Error-Message"),
		RetryAfter: serverWait(resp.Header)}
	for _, k := range []string{"X-Request-Id", "X-Amzn-Trace-Id", "X-Amz-Cf-Id"} {
		if v := resp.Header.Get(k); v != "" {
			e.RequestID = v
			break
		}
	}
	if e.Message == "" {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var body struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &body) == nil && body.Error != "" {
			e.Message = body.Error
		} else if s := strings.TrimSpace(string(b)); s != "" && len(s) < 300 && !strings.ContainsAny(s, "<>") {
			e.Message = s
		}
	}
	e.classify(h.endpoint.String(), h.token != "" && h.sameOrigin(resp.Request.URL))
	return e
}

// send does one request following redirects by hand. For API calls every
// redirect is followed; for resolve HEADs (stopAtData) the first absolute
// redirect that carries X-Repo-Commit is the data URL and is returned
// as-is. Relative redirects keep their query string (huggingface_hub drops
// it, #4637).
func (h *hub) send(ctx context.Context, method string, u *url.URL, accept string, stopAtData bool) (*http.Response, error) {
	for hops := 0; ; hops++ {
		req, err := h.newRequest(ctx, method, u)
		if err != nil {
			return nil, err
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if method == http.MethodHead {
			req.Header.Set("Accept-Encoding", "identity")
		}
		resp, err := h.hc.Do(req)
		if err != nil {
			return nil, err
		}
		if w := resp.Header.Get("X-HF-Warning"); w != "" {
			h.log.Warn("hub warning", zap.String("host", u.Host), zap.String("warning", w))
		}
		if !isRedirect(resp.StatusCode) {
			return resp, nil
		}
		loc := resp.Header.Get("Location")
		if loc == "" {
			return resp, nil
		}
		next, err := u.Parse(loc)
		if err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("%s %s: bad redirect Location %q: %w", method, u.Redacted(), loc, errdefs.ErrUnavailable)
		}
		absolute := strings.Contains(loc, "://")
		if stopAtData && absolute && resp.Header.Get("X-Repo-Commit") != "" {
			return resp, nil
		}
		resp.Body.Close()
		if hops >= 10 {
			return nil, fmt.Errorf("%s %s: more than 10 redirects: %w", method, u.Redacted(), errdefs.ErrUnavailable)
		}
		u = next
	}
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// call sends a request with retries on network errors and retryable
// statuses. It returns a 2xx or 3xx answer, or a classified error.
func (h *hub) call(ctx context.Context, method string, u *url.URL, accept string, stopAtData bool, oi opInfo) (*http.Response, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		resp, err := h.send(ctx, method, u, accept, stopAtData)
		var hdr http.Header
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			lastErr = fmt.Errorf("%s %s: %w", oi.op, oi.repo, withClass(err, errdefs.ErrUnavailable,
				"cannot reach "+h.endpoint.Host+": check the network, proxy settings and HF_ENDPOINT"))
		case resp.StatusCode < 400:
			return resp, nil
		case isRetryableStatus(resp.StatusCode):
			hdr = resp.Header
			lastErr = h.hubError(resp, oi)
		default:
			return nil, h.hubError(resp, oi)
		}
		if attempt >= h.retry.retries {
			return nil, lastErr
		}
		d := h.retry.delay(attempt, hdr)
		h.log.Debug("retrying hub request", zap.String("op", oi.op), zap.String("repo", oi.repo),
			zap.Int("attempt", attempt+1), zap.Duration("wait", d), zap.Error(lastErr))
		if err := sleepCtx(ctx, d); err != nil {
			return nil, err
		}
	}
}

// apiURL joins the endpoint with path segments, escaping each one.
func (h *hub) apiURL(segments ...string) *url.URL {
	u := *h.endpoint
	var b strings.Builder
	b.WriteString(strings.TrimRight(u.Path, "/"))
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(s)
	}
	raw := b.String()
	u.RawPath = raw
	p, err := url.PathUnescape(raw)
	if err != nil {
		p = raw
	}
	u.Path = p
	return &u
}

// escapeRepo escapes each segment of "org/name".
func escapeRepo(repo string) string { return escapeSegments(repo) }

// escapeSegments escapes a slash-separated path segment by segment.
func escapeSegments(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

var commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

// isCommit reports whether rev is a full commit hash.
func isCommit(rev string) bool { return commitRe.MatchString(rev) }

// revision pins rev to a commit (hf-hub-protocol §5 step 1).
func (h *hub) revision(ctx context.Context, repo, rev string) (string, error) {
	u := h.apiURL("api", "models", escapeRepo(repo), "revision", url.PathEscape(rev))
	oi := opInfo{op: "resolve revision", repo: repo, rev: rev}
	resp, err := h.call(ctx, http.MethodGet, u, "application/json", false, oi)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		SHA string `json:"sha"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&body); err != nil {
		return "", fmt.Errorf("resolve revision %s@%s: decode answer from %s: %v: %w", repo, rev, u.Host, err, ErrNotHub)
	}
	if !isCommit(body.SHA) {
		return "", withClass(fmt.Errorf("resolve revision %s@%s: %s answered sha %q, want 40 hex digits: %w", repo, rev, u.Host, body.SHA, ErrNotHub),
			errdefs.ErrUnavailable, "HF_ENDPOINT does not behave like the Hub; check the mirror URL")
	}
	return body.SHA, nil
}

// treeEntry is one item of GET /api/models/<repo>/tree/<rev>.
type treeEntry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	OID  string `json:"oid"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs"`
	XetHash string `json:"xetHash"`
}

// remoteFile is one file of a commit as the tree listing describes it.
type remoteFile struct {
	Path      string
	Size      int64
	BlobID    string // git blob id
	LFSSHA256 string
	LFSSize   int64
	XetHash   string
}

// etag is the blob's name in the cache: the LFS sha256, else the git oid.
func (f remoteFile) etag() string {
	if f.LFSSHA256 != "" {
		return f.LFSSHA256
	}
	return f.BlobID
}

var linkNext = regexp.MustCompile(`<([^>]+)>\s*;\s*rel="?next"?`)

// tree lists every file of commit, following the Link header's next pages.
func (h *hub) tree(ctx context.Context, repo, commit string) ([]remoteFile, error) {
	u := h.apiURL("api", "models", escapeRepo(repo), "tree", url.PathEscape(commit))
	q := url.Values{"recursive": {"true"}, "expand": {"false"}}
	u.RawQuery = q.Encode()
	oi := opInfo{op: "list files", repo: repo, rev: commit}
	var out []remoteFile
	for pages := 0; u != nil; pages++ {
		if pages > 100000 {
			return nil, fmt.Errorf("list files %s@%s: too many pages: %w", repo, commit, ErrNotHub)
		}
		resp, err := h.call(ctx, http.MethodGet, u, "application/json", false, oi)
		if err != nil {
			return nil, err
		}
		var entries []treeEntry
		err = json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(&entries)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("list files %s@%s: decode answer from %s: %v: %w", repo, commit, u.Host, err, ErrNotHub)
		}
		for _, e := range entries {
			if e.Type != "file" {
				continue
			}
			f := remoteFile{Path: e.Path, Size: e.Size, BlobID: e.OID, XetHash: e.XetHash}
			if e.LFS != nil {
				f.LFSSHA256, f.LFSSize = e.LFS.OID, e.LFS.Size
				f.Size = e.LFS.Size
			}
			out = append(out, f)
		}
		u = nil
		if m := linkNext.FindStringSubmatch(resp.Header.Get("Link")); m != nil {
			next, err := resp.Request.URL.Parse(m[1])
			if err != nil {
				return nil, fmt.Errorf("list files %s@%s: bad Link header %q: %w", repo, commit, m[1], ErrNotHub)
			}
			u = next
		}
	}
	return out, nil
}

// fileMeta is what a resolve HEAD says about one file.
type fileMeta struct {
	commit string
	etag   string
	size   int64 // -1 when the answer did not say
	// dataURL is the presigned CDN URL, or the resolve URL for files the
	// Hub serves itself.
	dataURL *url.URL
}

// resolve HEADs the file's resolve URL (hf-hub-protocol §5 step 6).
func (h *hub) resolve(ctx context.Context, repo, commit, path string) (*fileMeta, error) {
	u := h.apiURL(escapeRepo(repo), "resolve", url.PathEscape(commit), escapeSegments(path))
	oi := opInfo{op: "resolve file", repo: repo, rev: commit, path: path}
	resp, err := h.call(ctx, http.MethodHead, u, "", true, oi)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	m := &fileMeta{commit: resp.Header.Get("X-Repo-Commit"), size: -1}
	if m.commit == "" {
		return nil, withClass(fmt.Errorf("resolve file %s %s: %s answered without X-Repo-Commit, so a proxy or misconfigured mirror answered, not the Hub: %w",
			repo, path, resp.Request.URL.Host, ErrNotHub), errdefs.ErrUnavailable,
			"check HF_ENDPOINT / model.endpoint; a mirror that redirects to huggingface.co needs the final URL")
	}
	m.etag = normalizeEtag(resp.Header.Get("X-Linked-Etag"))
	if m.etag == "" {
		m.etag = normalizeEtag(resp.Header.Get("ETag"))
	}
	redirected := isRedirect(resp.StatusCode)
	if s := resp.Header.Get("X-Linked-Size"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			m.size = n
		}
	} else if !redirected && resp.ContentLength >= 0 {
		m.size = resp.ContentLength
	}
	m.dataURL = resp.Request.URL
	if redirected {
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			return nil, fmt.Errorf("resolve file %s %s: bad Location: %w", repo, path, ErrNotHub)
		}
		m.dataURL = loc
	}
	return m, nil
}

// normalizeEtag strips the weak marker and quotes.
func normalizeEtag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	return strings.Trim(s, `"`)
}

// errURLExpired marks a CDN answer that means "resolve again".
var errURLExpired = errors.New("download URL expired")
