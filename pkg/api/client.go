package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/containerd/errdefs"
)

// Client talks to one sglangd daemon. It is safe for concurrent use.
type Client struct {
	base   *url.URL
	socket string // unix socket path, "" for TCP
	hc     *http.Client
	token  string
	// daemonVersion is the version header of the last response; atomic
	// because concurrent requests set it.
	daemonVersion atomic.Value // string
}

// ClientOption configures a Client.
type ClientOption func(*clientOptions)

type clientOptions struct {
	token string
	tls   *tls.Config
}

// WithToken sets the bearer token sent to TCP endpoints. It is never sent
// over a unix socket, where file permissions decide access.
func WithToken(token string) ClientOption {
	return func(o *clientOptions) { o.token = token }
}

// WithTLSConfig sets the TLS configuration for https hosts.
func WithTLSConfig(c *tls.Config) ClientOption {
	return func(o *clientOptions) { o.tls = c }
}

// NewClient returns a client for host, which is unix:///path/to.sock,
// https://host:port or http://host:port (plain HTTP only makes sense on
// loopback). An empty host means DefaultHost.
func NewClient(host string, opts ...ClientOption) (*Client, error) {
	var o clientOptions
	for _, opt := range opts {
		opt(&o)
	}
	if host == "" {
		host = DefaultHost
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("host %q: %w: expected unix:///path or https://host:port", host, errdefs.ErrInvalidArgument)
	}
	c := &Client{token: o.token}
	tr := &http.Transport{TLSClientConfig: o.tls, ForceAttemptHTTP2: false}
	switch u.Scheme {
	case "unix":
		if u.Path == "" {
			return nil, fmt.Errorf("host %q: %w: unix host needs a socket path (unix:///run/sglangd/sglangd.sock)", host, errdefs.ErrInvalidArgument)
		}
		c.socket = u.Path
		c.token = "" // access over the socket is decided by its mode and group
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.socket)
		}
		c.base = &url.URL{Scheme: "http", Host: "sglangd"}
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("host %q: %w: expected https://host:port", host, errdefs.ErrInvalidArgument)
		}
		c.base = &url.URL{Scheme: u.Scheme, Host: u.Host}
	default:
		return nil, fmt.Errorf("host %q: %w: scheme must be unix, https or http", host, errdefs.ErrInvalidArgument)
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// DaemonVersion returns the daemon version seen in the last response, or "".
func (c *Client) DaemonVersion() string {
	v, _ := c.daemonVersion.Load().(string)
	return v
}

// Do sends a JSON request (in may be nil) and decodes a JSON response into
// out (which may be nil). Non-2xx answers come back as *Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// Stream sends a request and calls fn with each NDJSON line of the answer
// until the stream ends, fn fails, or ctx is done. An error line ends the
// stream and is returned as *Error.
func (c *Client) Stream(ctx context.Context, method, path string, in any, fn func(json.RawMessage) error) error {
	resp, err := c.send(ctx, method, path, in, "application/x-ndjson")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if bytes.HasPrefix(line, []byte(`{"error"`)) {
			var eb ErrorBody
			if json.Unmarshal(line, &eb) == nil && eb.Error != nil {
				eb.Error.Status = statusOf(eb.Error.Code)
				return eb.Error
			}
		}
		if err := fn(json.RawMessage(append([]byte(nil), line...))); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s %s: stream broken: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, in any, accept string) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	u := c.base.JoinPath(path)
	if i := strings.IndexByte(path, '?'); i >= 0 {
		u = c.base.JoinPath(path[:i])
		u.RawQuery = path[i+1:]
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", accept)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	c.daemonVersion.Store(resp.Header.Get(VersionHeader))
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = resp.Status
	}
	code := CodeInternal
	for _, c := range codeTable {
		if c.status == resp.StatusCode {
			code = c.code
			break
		}
	}
	return &Error{Status: resp.StatusCode, Code: code, Message: msg}
}

// dialError turns a failed connection into an unavailable error that says
// whether the daemon seems to be running.
func (c *Client) dialError(err error) error {
	target := c.base.Host
	if c.socket != "" {
		target = c.socket
	}
	e := &Error{Code: CodeUnavailable, Status: http.StatusServiceUnavailable,
		Message: fmt.Sprintf("cannot reach sglangd at %s: %v", target, err)}
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		e.Hint = "is sglangd running? check `systemctl status sglangd`, or pass --host / SGLANGD_HOST"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		e.Hint = "permission denied on the socket: add your user to the sglangd group or use sudo"
	}
	return e
}

// Version returns the daemon's version and identity.
func (c *Client) Version(ctx context.Context) (*VersionResponse, error) {
	var v VersionResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/version", nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Doctor runs the daemon's self-checks.
func (c *Client) Doctor(ctx context.Context) (*DoctorReport, error) {
	var r DoctorReport
	if err := c.Do(ctx, http.MethodGet, "/v1/doctor", nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Ready reports whether the daemon has finished starting.
func (c *Client) Ready(ctx context.Context) (*Health, error) {
	var h Health
	if err := c.Do(ctx, http.MethodGet, "/readyz", nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}
