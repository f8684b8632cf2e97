package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"go.uber.org/zap/zaptest"

	"github.com/sglangd/sglangd/pkg/api"
)

const testToken = "test-token-0123456789abcdef"

// startServer serves a test server on a temp unix socket and a loopback
// TCP port, with a few extra routes for streams and errors.
func startServer(t *testing.T) (s *Server, sock, tcpURL string) {
	t.Helper()
	s, err := New(Options{
		Logger: zaptest.NewLogger(t),
		Build:  api.BuildInfo{Version: "v-test"},
		Token:  testToken,
		Checks: []Check{
			{Name: "good", Run: func(context.Context) api.Check { return api.Check{Status: api.CheckOK, Message: "fine"} }},
			{Name: "panics", Run: func(context.Context) api.Check { panic("boom") }},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("GET /v1/test/missing", func(w http.ResponseWriter, r *http.Request) error {
		return api.WithHint(fmt.Errorf("session abc: %w", errdefs.ErrNotFound), "list sessions with sglangctl session list")
	})
	s.Handle("POST /v1/test/echo", func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			N int `json:"n"`
		}
		if err := DecodeJSON(r, &in); err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, in)
	})
	s.Handle("GET /v1/test/stream", func(w http.ResponseWriter, r *http.Request) error {
		failAt, _ := strconv.Atoi(r.URL.Query().Get("fail_at"))
		return Stream(w, r, func(send func(any) error) error {
			for i := range 3 {
				if i == failAt-1 {
					return fmt.Errorf("disk full at event %d: %w", i, errdefs.ErrResourceExhausted)
				}
				if err := send(map[string]int{"i": i}); err != nil {
					return err
				}
			}
			return nil
		})
	})
	sock = filepath.Join(t.TempDir(), "api.sock")
	uln, err := ListenUnix(sock, 0o660, "")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := ListenTCP(context.Background(), "127.0.0.1:0", "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = s.Serve(ctx, uln, false); done <- struct{}{} }()
	go func() { _ = s.Serve(ctx, tln, true); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = s.Shutdown(sctx)
		<-done
		<-done
	})
	return s, sock, "http://" + tln.Addr().String()
}

func TestTCPAuth(t *testing.T) {
	_, _, base := startServer(t)
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"no token", nil, http.StatusUnauthorized},
		{"wrong token", map[string]string{"Authorization": "Bearer wrong-token-0123456789abc"}, http.StatusUnauthorized},
		{"basic auth", map[string]string{"Authorization": "Basic " + testToken}, http.StatusUnauthorized},
		{"prefix of token", map[string]string{"Authorization": "Bearer " + testToken[:10]}, http.StatusUnauthorized},
		{"right token", map[string]string{"Authorization": "Bearer " + testToken}, http.StatusOK},
		{"browser with right token", map[string]string{"Authorization": "Bearer " + testToken, "Origin": "https://evil.example"}, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, base+"/v1/version", nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusUnauthorized {
				var eb api.ErrorBody
				if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || eb.Error == nil || eb.Error.Code != api.CodeUnauthenticated {
					t.Errorf("401 body: %+v, %v", eb.Error, err)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			}
		})
	}
}

func TestUnixNeedsNoToken(t *testing.T) {
	_, sock, _ := startServer(t)
	c, err := api.NewClient("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.Daemon.Version != "v-test" || v.APIVersion != api.Version || c.DaemonVersion() != "v-test" {
		t.Errorf("version %+v, header %q", v, c.DaemonVersion())
	}
}

func TestErrorShape(t *testing.T) {
	_, sock, base := startServer(t)
	c, _ := api.NewClient("unix://" + sock)
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   string
		wantMsg    string
		wantHint   string
		class      error
	}{
		{"not found with hint", "GET", "/v1/test/missing", "", 404, api.CodeNotFound, "session abc: not found", "list sessions with sglangctl session list", errdefs.ErrNotFound},
		{"unknown route", "GET", "/v1/nope", "", 404, api.CodeNotFound, "no route for GET /v1/nope", "", errdefs.ErrNotFound},
		{"wrong method", "DELETE", "/v1/version", "", 405, api.CodeMethodNotAllowed, "method DELETE not allowed on /v1/version; allowed: GET, HEAD", "", errdefs.ErrUnknown},
		{"bad json", "POST", "/v1/test/echo", "{", 400, api.CodeInvalidArgument, "request body", "", errdefs.ErrInvalidArgument},
		{"unknown field", "POST", "/v1/test/echo", `{"m":1}`, 400, api.CodeInvalidArgument, `unknown field "m"`, "", errdefs.ErrInvalidArgument},
		{"empty body", "POST", "/v1/test/echo", "", 400, api.CodeInvalidArgument, "got nothing", "", errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantCode == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			raw, _ := io.ReadAll(resp.Body)
			var body map[string]map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %s: %v", raw, err)
			}
			e := body["error"]
			if e["code"] != tt.wantCode || !strings.Contains(fmt.Sprint(e["message"]), tt.wantMsg) {
				t.Errorf("error body %s", raw)
			}
			if tt.wantHint != "" && e["hint"] != tt.wantHint {
				t.Errorf("hint %v, want %q", e["hint"], tt.wantHint)
			}
			// The client rebuilds the same error with its class.
			var in any
			if tt.body != "" {
				in = json.RawMessage(tt.body)
			}
			cerr := c.Do(context.Background(), tt.method, tt.path, in, nil)
			if tt.body == "{" {
				return // the client cannot send invalid JSON
			}
			var ae *api.Error
			if !errors.As(cerr, &ae) || ae.Status != tt.wantStatus || !errors.Is(cerr, tt.class) {
				t.Errorf("client error %#v (%v), want status %d class %v", ae, cerr, tt.wantStatus, tt.class)
			}
			if tt.wantHint != "" && api.HintOf(cerr) != tt.wantHint {
				t.Errorf("client hint %q", api.HintOf(cerr))
			}
		})
	}
}

func TestStream(t *testing.T) {
	_, sock, _ := startServer(t)
	c, _ := api.NewClient("unix://" + sock)
	tests := []struct {
		name      string
		failAt    int
		wantLines int
		wantErr   error
	}{
		{"complete", 0, 3, nil},
		{"fails midway: error is the last line", 3, 2, errdefs.ErrResourceExhausted},
		{"fails first: proper status", 1, 0, errdefs.ErrResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lines []int
			err := c.Stream(context.Background(), "GET", fmt.Sprintf("/v1/test/stream?fail_at=%d", tt.failAt), nil, func(raw json.RawMessage) error {
				var ev map[string]int
				if err := json.Unmarshal(raw, &ev); err != nil {
					return err
				}
				lines = append(lines, ev["i"])
				return nil
			})
			if len(lines) != tt.wantLines {
				t.Errorf("got %d events, want %d", len(lines), tt.wantLines)
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			var ae *api.Error
			if tt.failAt == 1 && (!errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests) {
				t.Errorf("early failure should keep its status: %#v", ae)
			}
		})
	}
}

func TestReadyzAndDoctor(t *testing.T) {
	s, sock, _ := startServer(t)
	c, _ := api.NewClient("unix://" + sock)
	ctx := context.Background()
	if _, err := c.Ready(ctx); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("readyz before SetReady: %v, want unavailable", err)
	}
	s.SetReady(true)
	if h, err := c.Ready(ctx); err != nil || h.Status != "ready" {
		t.Errorf("readyz after SetReady: %+v %v", h, err)
	}
	rep, err := c.Doctor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || len(rep.Checks) != 2 || rep.Checks[0].Name != "good" || rep.Checks[1].Status != api.CheckFail ||
		!strings.Contains(rep.Checks[1].Message, "panicked") {
		t.Errorf("doctor report %+v", rep)
	}
}

func TestMetrics(t *testing.T) {
	_, sock, _ := startServer(t)
	c, _ := api.NewClient("unix://" + sock)
	ctx := context.Background()
	_, _ = c.Version(ctx)
	_ = c.Do(ctx, "GET", "/v1/does/not/exist/1", nil, nil)
	_ = c.Do(ctx, "GET", "/v1/does/not/exist/2", nil, nil)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://x/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	text := string(b)
	for _, want := range []string{
		`sglangd_build_info{commit="",goversion="",version="v-test"} 1`,
		`sglangd_api_requests_total{code="200",method="GET",route="/v1/version"} 1`,
		`sglangd_api_requests_total{code="404",method="GET",route="unmatched"} 2`,
		`sglangd_api_request_duration_seconds_count{method="GET",route="/v1/version"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("mode and group", func(t *testing.T) {
		path := filepath.Join(dir, "a.sock")
		ln, err := ListenUnix(path, 0o660, me.Gid)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
			t.Errorf("mode %v, want socket 0660", fi.Mode())
		}
	})
	t.Run("live socket is not taken over", func(t *testing.T) {
		path := filepath.Join(dir, "b.sock")
		ln, err := ListenUnix(path, 0o600, "")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if _, err := ListenUnix(path, 0o600, ""); !errors.Is(err, errdefs.ErrAlreadyExists) || !strings.Contains(err.Error(), "another sglangd") {
			t.Errorf("second listener: %v", err)
		}
	})
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(dir, "c.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		ln2, err := ListenUnix(path, 0o600, "")
		if err != nil {
			t.Fatalf("stale socket: %v", err)
		}
		ln2.Close()
	})
	t.Run("regular file is not removed", func(t *testing.T) {
		path := filepath.Join(dir, "d.sock")
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ListenUnix(path, 0o600, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("got %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Error("regular file was removed")
		}
	})
	t.Run("unknown group", func(t *testing.T) {
		if _, err := ListenUnix(filepath.Join(dir, "e.sock"), 0o660, "no-such-group-xyz"); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("got %v", err)
		}
	})
}
