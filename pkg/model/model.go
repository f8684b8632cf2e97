// Package model downloads Hugging Face models into a Hugging Face hub
// cache that Python's huggingface_hub (and so SGLang) reads as its own.
//
// It speaks the Hub protocol over plain net/http (hf-hub-protocol.md):
// a revision is pinned to a commit, the commit's files are listed with
// their sizes and hashes, and each selected file is fetched in ranged
// parallel parts from the Hub or the CDN it redirects to. Downloads resume
// across restarts from a state file kept next to the partial blob
// (blobs/<etag>.hfd.part and .hfd.part.json), survive flaky servers
// (retries with backoff honouring Retry-After, stall detection, expired
// CDN URLs, servers that ignore Range) and are verified (sha256 for LFS
// files, git's blob sha1 otherwise) before they are renamed into blobs/.
// Only a verified blob is ever linked into snapshots/<commit>/, so SGLang
// never sees a partial or corrupt file.
//
// The token goes only to the configured endpoint's origin; any other host
// (a CDN, a mirror's data host) gets no Authorization header. The token
// never appears in logs or errors.
//
// Lifecycle: New returns a Cache; Resolve, Pull, List, Verify and Remove
// are safe for concurrent use, across processes too (blob locks in
// .locks/ are flock(2) locks, as huggingface_hub takes them). A daemon runs
// each Pull as a detached operation keyed by repo and commit (Resolve
// first), so callers attach to one download instead of starting another.
//
// The package reports progress through a func(Progress) callback and knows
// nothing of the HTTP API that carries it.
package model

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// DefaultEndpoint is the Hugging Face Hub.
const DefaultEndpoint = "https://huggingface.co"

// Options configure a Cache. Zero values take the defaults noted.
type Options struct {
	Logger *zap.Logger
	// Registerer receives download metrics; nil registers none.
	Registerer prometheus.Registerer

	// CacheDir is the hub cache (HF_HUB_CACHE). Required.
	CacheDir string
	// StateDir keeps sglangd's verification records, outside the hub
	// cache (huggingface_hub treats every cache entry as a repo). Empty
	// disables the records: List then reports nothing as verified.
	StateDir string

	// Endpoint is the Hub or a mirror; default DefaultEndpoint.
	Endpoint string
	// Token is the Hugging Face token, sent only to Endpoint's origin.
	Token string
	// UserAgent identifies the client; default "sglangd".
	UserAgent string

	// Include and Exclude are the globs used when a pull names none;
	// nil means DefaultInclude / DefaultExclude.
	Include, Exclude []string

	// PartSize is the size of one ranged request; default 128 MiB.
	PartSize int64
	// ConnectionsPerFile caps parallel parts of one file; default 8.
	ConnectionsPerFile int
	// ConcurrentFiles caps files downloaded at once; default 4.
	ConcurrentFiles int
	// MaxConnections caps the connections of one pull; default 16.
	MaxConnections int
	// StallTimeout aborts an attempt that received no byte for this long
	// (uncounted retry); default 30s.
	StallTimeout time.Duration
	// Retries is the counted retries per part and per API call; 0 means
	// the default 6, negative means none.
	Retries int
	// RetryBaseDelay and RetryMaxDelay shape the backoff; defaults 1s, 8s.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// MaxServerWait caps a Retry-After the server asks for; default 10m.
	MaxServerWait time.Duration
	// ProgressInterval is the period of progress reports; default 250ms.
	ProgressInterval time.Duration
	// NoSync skips fsync of partial and finished blobs. Integrity is still
	// verified; a power cut may then cost a re-download.
	NoSync bool

	// Transport overrides the HTTP transport (tests).
	Transport http.RoundTripper
	// FreeSpace reports the bytes available under dir; default statfs.
	FreeSpace func(dir string) (int64, error)
}

// resolved options: defaults applied.
type runOptions struct {
	Options
	Durable bool
}

func (o Options) withDefaults() runOptions {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	o.Endpoint = strings.TrimRight(o.Endpoint, "/")
	if o.UserAgent == "" {
		o.UserAgent = "sglangd"
	}
	if o.Include == nil {
		o.Include = DefaultInclude
	}
	if o.Exclude == nil {
		o.Exclude = DefaultExclude
	}
	if o.PartSize <= 0 {
		o.PartSize = 128 << 20
	}
	if o.ConnectionsPerFile <= 0 {
		o.ConnectionsPerFile = 8
	}
	if o.ConcurrentFiles <= 0 {
		o.ConcurrentFiles = 4
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 16
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 30 * time.Second
	}
	switch {
	case o.Retries == 0:
		o.Retries = 6
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.RetryBaseDelay <= 0 {
		o.RetryBaseDelay = time.Second
	}
	if o.RetryMaxDelay <= 0 {
		o.RetryMaxDelay = 8 * time.Second
	}
	if o.MaxServerWait <= 0 {
		o.MaxServerWait = 10 * time.Minute
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = 250 * time.Millisecond
	}
	if o.FreeSpace == nil {
		o.FreeSpace = statfsFree
	}
	return runOptions{Options: o, Durable: !o.NoSync}
}

// bootID identifies the running kernel boot; "" if unknown, which makes
// resumes trust only fsynced bytes.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func statfsFree(dir string) (int64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, err
	}
	return int64(fs.Bavail) * int64(fs.Bsize), nil
}

// Cache is a Hugging Face hub cache directory and the client that fills it.
type Cache struct {
	opts    runOptions
	log     *zap.Logger
	hub     *hub
	metrics *metrics

	// bootID tells a resume whether unsynced bytes can have survived.
	bootID string

	mu   sync.Mutex
	busy map[string]int // repo -> running pulls
}

// New checks the options and returns a Cache. It does no I/O.
func New(opts Options) (*Cache, error) {
	o := opts.withDefaults()
	if o.CacheDir == "" || !strings.HasPrefix(o.CacheDir, "/") {
		return nil, fmt.Errorf("model cache directory %q: %w: expected an absolute path", o.CacheDir, errdefs.ErrInvalidArgument)
	}
	ep, err := url.Parse(o.Endpoint)
	if err != nil || (ep.Scheme != "http" && ep.Scheme != "https") || ep.Host == "" {
		return nil, fmt.Errorf("model endpoint %q: %w: expected an http(s) URL such as https://huggingface.co", o.Endpoint, errdefs.ErrInvalidArgument)
	}
	if _, err := newFilter(o.Include, o.Exclude); err != nil {
		return nil, err
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	tr := o.Transport
	if tr == nil {
		tr = newTransport(o.MaxConnections)
	}
	log := o.Logger.Named("model")
	c := &Cache{
		opts: o, log: log, metrics: m, busy: map[string]int{}, bootID: bootID(),
		hub: &hub{
			endpoint: ep, token: o.Token, ua: o.UserAgent, log: log,
			hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // redirects are followed by hand, see hub.send
			}},
			retry: retryPolicy{retries: o.Retries, base: o.RetryBaseDelay, max: o.RetryMaxDelay, maxServerWait: o.MaxServerWait},
		},
	}
	return c, nil
}

// newTransport is tuned for a few long, fast downloads: HTTP/1.1 only (one
// TCP flow per part beats HTTP/2 multiplexing on one connection), enough
// idle connections to reuse every part's, and timeouts on everything but
// the body, whose stalls the downloader watches itself.
func newTransport(maxConns int) *http.Transport {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          2 * maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		ReadBufferSize:        256 << 10,
		Protocols:             p,
	}
}

// Dir returns the hub cache directory.
func (c *Cache) Dir() string { return c.opts.CacheDir }

// Endpoint returns the Hub endpoint in use.
func (c *Cache) Endpoint() string { return c.opts.Endpoint }

// SnapshotDir is where the files of repo at commit are linked; SGLang
// takes it as --model-path.
func (c *Cache) SnapshotDir(repo, commit string) string {
	return newRepoDir(c.opts.CacheDir, repo).snapshot(commit)
}

func (c *Cache) enter(repo string) {
	c.mu.Lock()
	c.busy[repo]++
	c.mu.Unlock()
}

func (c *Cache) leave(repo string) {
	c.mu.Lock()
	if c.busy[repo]--; c.busy[repo] <= 0 {
		delete(c.busy, repo)
	}
	c.mu.Unlock()
}

func (c *Cache) isBusy(repo string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy[repo] > 0
}

// metrics are the download counters.
type metrics struct {
	bytes   prometheus.Counter
	retries *prometheus.CounterVec
	pulls   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "sglangd", Subsystem: "model",
			Name: "downloaded_bytes_total", Help: "Bytes of model files received from the Hub or its CDN."}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sglangd", Subsystem: "model",
			Name: "download_retries_total", Help: "Retried download attempts by reason."}, []string{"reason"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "sglangd", Subsystem: "model",
			Name: "pulls_total", Help: "Finished model pulls by result."}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.bytes, m.retries, m.pulls} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register model metrics: %w", err)
		}
	}
	return m, nil
}

// CheckResult is what Check found, for the daemon's doctor.
type CheckResult struct {
	CacheDir  string
	FreeBytes int64
	// WriteErr is set when the cache directory cannot be written.
	WriteErr error
	Endpoint string
	// EndpointErr is set when the endpoint did not answer; nil when the
	// network check was skipped or succeeded.
	EndpointErr error
	// EndpointChecked says whether the network check ran.
	EndpointChecked bool
	TokenSet        bool
}

// Check reports whether the cache directory is usable and, if network is
// true, whether the endpoint answers an HTTP HEAD within ctx's deadline.
func (c *Cache) Check(ctx context.Context, network bool) CheckResult {
	res := CheckResult{CacheDir: c.opts.CacheDir, Endpoint: c.opts.Endpoint, TokenSet: c.opts.Token != ""}
	res.WriteErr = checkWritable(filepath.Join(c.opts.CacheDir, locksDir))
	if res.WriteErr == nil {
		res.FreeBytes, _ = c.opts.FreeSpace(c.opts.CacheDir)
	}
	if network {
		res.EndpointChecked = true
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.opts.Endpoint+"/", nil)
		if err == nil {
			req.Header.Set("User-Agent", c.opts.UserAgent)
			var resp *http.Response
			if resp, err = c.hub.hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		res.EndpointErr = err
	}
	return res
}
