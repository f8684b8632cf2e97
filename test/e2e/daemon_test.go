// Package e2e drives the real sglangd and sglangctl binaries end to end:
// the daemon on a temp socket and data directory, the CLI against it.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sglangd/sglangd/internal/testutil"
	"github.com/sglangd/sglangd/pkg/api"
)

// daemonProc is a running sglangd with its notify socket and log.
type daemonProc struct {
	cmd     *exec.Cmd
	sock    string
	log     *testutil.SyncBuffer
	notify  chan string
	readyIn time.Duration
	done    chan error
}

// startDaemon runs sglangd with a systemd-style NOTIFY_SOCKET and waits for
// READY=1, measuring the cold start.
func startDaemon(t *testing.T, dir string, args ...string) *daemonProc {
	t.Helper()
	bin := testutil.BuildBinary(t, "./cmd/sglangd")
	sock := filepath.Join(dir, "sglangd.sock")
	notifyPath := filepath.Join(t.TempDir(), "notify.sock")
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{sock: sock, log: &testutil.SyncBuffer{}, notify: make(chan string, 32), done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nconn.Read(buf)
			if err != nil {
				close(d.notify)
				return
			}
			d.notify <- string(buf[:n])
		}
	}()
	d.cmd = exec.Command(bin, append([]string{"--data-dir", filepath.Join(dir, "data"), "--socket", sock}, args...)...)
	// gpu.mode none: these tests run on hosts without an NVIDIA driver,
	// where the doctor's GPU check would fail (cmd/sglangd tests cover it).
	d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "SGLANGD_CONFIG=", "WATCHDOG_USEC=400000", "SGLANGD_GPU_MODE=none",
		// Tests never leave loopback: the doctor probes the HF endpoint.
		"HF_ENDPOINT=http://127.0.0.1:9")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
		nconn.Close()
	})
	if !d.waitNotify(t, "READY=1", 30*time.Second) {
		t.Fatalf("no READY=1 from sglangd; log:\n%s", d.log)
	}
	d.readyIn = time.Since(start)
	return d
}

func (d *daemonProc) waitNotify(t *testing.T, want string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case msg, ok := <-d.notify:
			if !ok {
				return false
			}
			if strings.Contains(msg, want) {
				return true
			}
		case err := <-d.done:
			d.done <- err
			t.Fatalf("sglangd exited (%v) before %s; log:\n%s", err, want, d.log)
		case <-deadline:
			return false
		}
	}
}

// stop sends SIGTERM and returns the exit error.
func (d *daemonProc) stop(t *testing.T) error {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("sglangd did not stop within 20s of SIGTERM; log:\n%s", d.log)
		return nil
	}
}

// ctl runs sglangctl and returns stdout, stderr and the exit code.
func ctl(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	bin := testutil.BuildBinary(t, "./cmd/sglangctl")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestDaemonLifecycle(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	t.Logf("cold start to READY=1: %s", d.readyIn)
	host := "--host=unix://" + d.sock
	if !d.waitNotify(t, "WATCHDOG=1", 5*time.Second) {
		t.Error("no WATCHDOG=1 within 5s although WATCHDOG_USEC=400000")
	}

	fi, err := os.Stat(d.sock)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, %v; want 0660", fi.Mode(), err)
	}

	out, stderr, code := ctl(t, nil, host, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("version exit %d: %s", code, stderr)
	}
	var v struct {
		Client api.BuildInfo       `json:"client"`
		Daemon api.VersionResponse `json:"daemon"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("version -o json is not JSON: %v\n%s", err, out)
	}
	if v.Client.GoVersion == "" || v.Daemon.Daemon.Version == "" || len(v.Daemon.DaemonID) != 32 || v.Daemon.Starts != 1 {
		t.Errorf("version output %+v", v)
	}
	firstID := v.Daemon.DaemonID

	out, stderr, code = ctl(t, nil, host, "doctor", "-o", "json")
	if code != 0 {
		t.Fatalf("doctor exit %d: %s %s", code, out, stderr)
	}
	var rep api.DoctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	names := map[string]api.CheckStatus{}
	for _, c := range rep.Checks {
		names[c.Name] = c.Status
	}
	if !rep.OK || names["daemon"] != api.CheckOK || names["state"] != api.CheckOK {
		t.Errorf("doctor report %+v", rep)
	}

	out, _, code = ctl(t, nil, host, "doctor")
	if code != 0 || !strings.Contains(out, "CHECK") || !strings.Contains(out, "state") {
		t.Errorf("doctor table (exit %d):\n%s", code, out)
	}
	out, _, code = ctl(t, nil, host, "version", "-o", "yaml")
	if code != 0 || !strings.Contains(out, "daemon_id: "+firstID) {
		t.Errorf("version -o yaml (exit %d):\n%s", code, out)
	}

	if err := d.stop(t); err != nil {
		t.Fatalf("SIGTERM: exit %v; log:\n%s", err, d.log)
	}
	if _, err := os.Stat(d.sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after stop: %v", err)
	}
	if !strings.Contains(d.log.String(), `"sglangd stopped"`) {
		t.Errorf("log lacks the clean stop:\n%s", d.log)
	}

	// A second start on the same data directory sees the same state.
	d2 := startDaemon(t, dir)
	out, _, _ = ctl(t, nil, "--host=unix://"+d2.sock, "version", "-o", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Daemon.DaemonID != firstID || v.Daemon.Starts != 2 {
		t.Errorf("after restart: id %s starts %d; want %s and 2", v.Daemon.DaemonID, v.Daemon.Starts, firstID)
	}
	if err := d2.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestCLIExitCodes(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"unknown flag", []string{"--bogus"}, 2, "unknown flag: --bogus"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"bad output", []string{"version", "-o", "xml"}, 2, "-o/--output must be table, json or yaml"},
		{"extra args", []string{"doctor", "now"}, 2, "unknown command"},
		{"bad host", []string{"--host", "ftp://x", "doctor"}, 2, "scheme must be unix, https or http"},
		{"daemon not running", []string{"--host", "unix://" + filepath.Join(dir, "none.sock"), "doctor"}, 1, "Hint: is sglangd running?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := ctl(t, nil, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("exit %d stderr %q; want %d and %q", code, stderr, tt.wantCode, tt.wantErr)
			}
		})
	}
}

func TestTCPWithToken(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tokenFile := filepath.Join(dir, "token")
	const token = "e2e-token-0123456789abcdef"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sglangd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("api:\n  tcp:\n    listen: %s\n    token_file: %s\n", addr, tokenFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir, "--config", cfg)
	host := "--host=http://" + addr
	tests := []struct {
		name     string
		env      []string
		args     []string
		wantCode int
		want     string
	}{
		{"no token", nil, []string{host, "doctor"}, 1, "missing or wrong bearer token"},
		{"wrong token", nil, []string{host, "--token", "nope-nope-nope-nope", "doctor"}, 1, "missing or wrong bearer token"},
		{"right token flag", nil, []string{host, "--token", token, "doctor"}, 0, ""},
		{"right token env", []string{"SGLANGD_TOKEN=" + token}, []string{host, "version"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := ctl(t, tt.env, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d stderr %q; want %d %q", code, stderr, tt.wantCode, tt.want)
			}
		})
	}
	if strings.Contains(d.log.String(), token) {
		t.Error("the API token appears in the daemon log")
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sglangd.yaml")
	if err := os.WriteFile(cfg, []byte("log:\n  level: info\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, dir, "--config", cfg)
	if err := os.WriteFile(cfg, []byte("log:\n  level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !d.waitNotify(t, "RELOADING=1", 10*time.Second) {
		t.Fatal("no RELOADING=1 after SIGHUP")
	}
	waitFor(t, func() bool { return strings.Contains(d.log.String(), `"log_level":"debug"`) }, d.log)

	// A broken file is rejected and the daemon keeps running.
	if err := os.WriteFile(cfg, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(d.log.String(), "config rejected, keeping the running one") }, d.log)
	if _, _, code := ctl(t, nil, "--host=unix://"+d.sock, "version"); code != 0 {
		t.Error("daemon does not answer after a rejected reload")
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestRefusesNewerDatabase(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	// Bump the schema past what this build knows, as a newer sglangd would.
	db := filepath.Join(dir, "data", "sglangd.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	b[60], b[61], b[62], b[63] = 0, 0, 0x03, 0xe7 // user_version = 999 (big-endian at offset 60)
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := testutil.BuildBinary(t, "./cmd/sglangd")
	cmd := exec.CommandContext(context.Background(), bin, "--data-dir", filepath.Join(dir, "data"), "--socket", filepath.Join(dir, "s.sock"))
	cmd.Env = append(os.Environ(), "SGLANGD_CONFIG=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("sglangd on a newer database: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "schema version 999") || !strings.Contains(string(out), "upgrade sglangd") {
		t.Errorf("message does not explain the refusal:\n%s", out)
	}
	after, _ := os.ReadFile(db)
	if !bytes.Equal(after, b) {
		t.Error("the refused database was modified")
	}
}

func waitFor(t *testing.T, cond func() bool, log fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 10s; log:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
