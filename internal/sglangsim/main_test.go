package sglangsim

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
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
	logs := &syncBuffer{}
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
	var errb bytes.Buffer
	code := Main(context.Background(), []string{"sglang-sim", "-m", "sglang.launch_server", "--model-path", "m", "--port", fmt.Sprint(freePort(t)), "--sim-crash-at-step", "3"},
		[]string{"SGLANG_SIM_LOAD_TIME=1ms", "SGLANG_SIM_DECODE_STEP_TIME=1ms"}, &bytes.Buffer{}, &errb)
	if code != ExitCrashed || !strings.Contains(errb.String(), "Scheduler hit an exception") {
		t.Errorf("code %d log:\n%s", code, errb.String())
	}
}
