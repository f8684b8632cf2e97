package sglangsim

import (
	"github.com/sglangd/sglangd/internal/testutil"

	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain_Invocations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		argv   []string
		env    []string
		code   int
		stdout string
		stderr string
	}{
		{"python version", []string{"python3", "--version"}, nil, ExitOK, "Python 3.12.3", ""},
		{"other module", []string{"/usr/bin/python3", "-m", "vllm.entrypoints.api_server"}, nil, ExitError, "", "No module named vllm.entrypoints.api_server"},
		{"python without -m", []string{"python", "script.py"}, nil, ExitUsage, "", "only runs `-m sglang.launch_server`"},
		{"missing model", []string{"python3", "-m", "sglang.launch_server", "--port", "1"}, nil, ExitUsage, "", "launch_server.py: error: the following arguments are required: --model-path"},
		{"help", []string{"sglang-sim", "--help"}, nil, ExitOK, "SGLANG_SIM_CRASH_AT_STEP", ""},
		{"strict args", []string{"sglang-sim", "--model-path", "m", "--bogus", "1"}, []string{"SGLANG_SIM_STRICT_ARGS=true"}, ExitUsage, "", "unrecognized arguments: --bogus 1"},
		{"bad sim env", []string{"sglang-sim", "--model-path", "m"}, []string{"SGLANG_SIM_LOAD_TIME=later"}, ExitUsage, "", "SGLANG_SIM_LOAD_TIME"},
		{"unknown sim flag", []string{"sglang-sim", "--model-path", "m", "--sim-nope=1"}, nil, ExitUsage, "", "unknown simulator flag --sim-nope"},
		{"entrypoint without command", []string{"/opt/nvidia/nvidia_entrypoint.sh"}, nil, ExitOK, "== SGLang ==", ""},
		{"entrypoint missing command", []string{"/opt/nvidia/nvidia_entrypoint.sh", "no-such-binary-xyz"}, nil, 127, "", "exec: no-such-binary-xyz: not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), tc.argv, tc.env, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("code %d stdout %q stderr %q", code, out.String(), errb.String())
			}
		})
	}
}

// TestMain_ServesAsPython3 runs Main the way the container does and stops it
// with the context (SIGTERM in cmd/sglang-sim).
func TestMain_ServesAsPython3(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &testutil.SyncBuffer{}
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, []string{"python3", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen3-8B", "--host", "127.0.0.1",
			"--port", fmt.Sprint(port), "--tp-size", "2", "--sim-layers", "2", "--sim-decode-step-time=1ms", "--enable-metrics"},
			[]string{"SGLANG_SIM_LOAD_TIME=1ms", "SGLANG_SIM_HEALTH_POLL=5ms"}, &bytes.Buffer{}, logs)
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no health 200: %v\n%s", err, logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case c := <-code:
		if c != ExitOK {
			t.Errorf("exit %d", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return after cancel")
	}
	if !strings.Contains(logs.String(), " TP1] Load weight begin") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestMain_CrashExitStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     []string
		code    int
		wantLog string
	}{
		{"crash in a batch", []string{"--sim-crash-at-step", "3"}, nil, ExitCrashed, "Scheduler hit an exception"},
		{"load error, default status", []string{"--sim-load-error", "torch.OutOfMemoryError: CUDA out of memory"}, nil, ExitCrashed, "in load_model"},
		{"load error as PID 1", nil, []string{"SGLANG_SIM_LOAD_ERROR=torch.OutOfMemoryError: CUDA out of memory", "SGLANG_SIM_CRASH_EXIT_CODE=0"}, 0, "torch.OutOfMemoryError"},
		{"failed warm-up", []string{"--sim-warmup-error=boom", "--sim-crash-exit-code=3"}, nil, 3, "Initialization failed. warmup error: boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var errb bytes.Buffer
			argv := append([]string{"sglang-sim", "-m", "sglang.launch_server", "--model-path", "m", "--port", fmt.Sprint(freePort(t))}, tc.args...)
			code := Main(context.Background(), argv, append([]string{"SGLANG_SIM_LOAD_TIME=1ms", "SGLANG_SIM_DECODE_STEP_TIME=1ms"}, tc.env...), &bytes.Buffer{}, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.wantLog) {
				t.Errorf("code %d (want %d) log:\n%s", code, tc.code, errb.String())
			}
		})
	}
}

// TestMain_IgnoreSIGTERM runs Main in a child process (this test binary,
// see TestHelperMain), because the knob changes the signal handling of the
// whole process: SIGTERM is logged and ignored, SIGINT still stops it.
func TestMain_IgnoreSIGTERM(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMain$", "--", "--model-path", "m", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--sim-ignore-sigterm")
	cmd.Env = append(append(os.Environ(), "SGLANGSIM_HELPER_MAIN=1"), TestEnv()...)
	logs := &testutil.SyncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	waitFor(t, logs, "ready", func() bool { return healthOK(url) })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, logs, "the ignored SIGTERM logged", func() bool { return strings.Contains(logs.String(), "Received SIGTERM; ignored") })
	if !healthOK(url) {
		t.Fatalf("server stopped serving after SIGTERM:\n%s", logs)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("exit after SIGINT: %v\n%s", err, logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("SIGINT did not stop the server:\n%s", logs)
	}
}

// TestHelperMain is the child process of TestMain_IgnoreSIGTERM: Main with
// cmd/sglang-sim's signal handling and the arguments after "--".
func TestHelperMain(t *testing.T) {
	if os.Getenv("SGLANGSIM_HELPER_MAIN") != "1" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, append([]string{"sglang-sim"}, args...), os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func healthOK(url string) bool {
	res, err := http.Get(url)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, logs *testutil.SyncBuffer, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, logs)
		}
	}
}
