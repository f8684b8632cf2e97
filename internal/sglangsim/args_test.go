package sglangsim

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestParseServerArgs(t *testing.T) {
	tests := []struct {
		name    string
		argv    string
		check   func(t *testing.T, a ServerArgs)
		wantErr string
	}{
		{
			name: "sglangd launch line",
			argv: "--model-path Qwen/Qwen3-8B --host 0.0.0.0 --port 30000 --tp-size 4 --dp-size 2 --pp-size 2 --api-key secret --enable-metrics",
			check: func(t *testing.T, a ServerArgs) {
				if a.ModelPath != "Qwen/Qwen3-8B" || a.Host != "0.0.0.0" || a.Port != 30000 || a.TPSize != 4 || a.DPSize != 2 || a.PPSize != 2 {
					t.Errorf("parsed %+v", a)
				}
				if a.APIKey == nil || *a.APIKey != "secret" || !a.EnableMetrics {
					t.Errorf("api key / metrics: %v %v", a.APIKey, a.EnableMetrics)
				}
				if a.ServedModelName != "Qwen/Qwen3-8B" || a.TokenizerPath != "Qwen/Qwen3-8B" {
					t.Errorf("defaults from model path: %q %q", a.ServedModelName, a.TokenizerPath)
				}
			},
		},
		{
			name: "defaults",
			argv: "--model-path m",
			check: func(t *testing.T, a ServerArgs) {
				if a.Host != "127.0.0.1" || a.Port != 30000 || a.TPSize != 1 || a.DPSize != 1 || a.WatchdogTimeout != 300 {
					t.Errorf("defaults %+v", a)
				}
			},
		},
		{
			name: "equals form and aliases",
			argv: "--model=m --tp=2 --dp 3 --pipeline-parallel-size=2 --ep-size 2",
			check: func(t *testing.T, a ServerArgs) {
				if a.ModelPath != "m" || a.TPSize != 2 || a.DPSize != 3 || a.PPSize != 2 || a.EPSize != 2 {
					t.Errorf("parsed %+v", a)
				}
			},
		},
		{
			name: "unknown flags kept with their values",
			argv: "--model-path m --reasoning-parser qwen3 --enable-torch-compile --port 1234",
			check: func(t *testing.T, a ServerArgs) {
				if got := strings.Join(a.Unknown, " "); got != "--reasoning-parser qwen3 --enable-torch-compile" {
					t.Errorf("unknown = %q", got)
				}
				if a.Port != 1234 {
					t.Errorf("port after unknown flag = %d", a.Port)
				}
			},
		},
		{name: "model path required", argv: "--port 1", wantErr: "--model-path"},
		{name: "bad int", argv: "--model-path m --tp-size two", wantErr: `invalid int value: "two"`},
		{name: "missing value", argv: "--model-path m --port", wantErr: "expected one argument"},
		{name: "zero tp", argv: "--model-path m --tp-size 0", wantErr: "at least 1"},
		{name: "bool with value", argv: "--model-path m --enable-metrics=yes", wantErr: "ignored explicit argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseServerArgs(strings.Fields(tc.argv))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want invalid argument containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, a)
		})
	}
}

func TestSimOptions_ApplyEnvAndFlags(t *testing.T) {
	var o SimOptions
	err := o.ApplyEnv(map[string]string{
		"SGLANG_SIM_LOAD_TIME": "3s", "SGLANG_SIM_CRASH_AT_STEP": "12", "SGLANG_SIM_CORRUPT_RANK": "1",
		"SGLANG_SIM_CORRUPT_MODE": "corrupt", "SGLANG_SIM_HANG_STOP_PROFILE": "true", "SGLANG_SIM_MISSING_RANK": "0",
		"SGLANG_SIM_SLOW_RESPONSE": "50ms", "SGLANG_SIM_LOAD_ERROR": "torch.OutOfMemoryError: CUDA out of memory",
		"SGLANG_SIM_CRASH_EXIT_CODE": "0", "SGLANG_SIM_IGNORE_SIGTERM": "1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.LoadTime.String() != "3s" || o.CrashAtStep != 12 || *o.CorruptRank != 1 || o.CorruptMode != "corrupt" || !o.HangStopProfile || *o.MissingRank != 0 || o.SlowResponse.String() != "50ms" {
		t.Errorf("options %+v", o)
	}
	if o.LoadError != "torch.OutOfMemoryError: CUDA out of memory" || o.CrashExitCode == nil || *o.CrashExitCode != 0 || !o.IgnoreSIGTERM {
		t.Errorf("start-up faults: load error %q, exit code %v, ignore SIGTERM %v", o.LoadError, o.CrashExitCode, o.IgnoreSIGTERM)
	}
	if ok, err := o.applySimFlag("--sim-crash-exit-code", "256"); !ok || err == nil || !strings.Contains(err.Error(), "0-255") {
		t.Errorf("exit code 256: %v %v", ok, err)
	}
	if ok, err := o.applySimFlag("--sim-export-per-mb", "1s"); !ok || err != nil || o.ExportPerMB.String() != "1s" {
		t.Errorf("flag: %v %v %v", ok, err, o.ExportPerMB)
	}
	if err := (&SimOptions{}).ApplyEnv(map[string]string{"SGLANG_SIM_LOAD_TIME": "soon"}); err == nil || !strings.Contains(err.Error(), "SGLANG_SIM_LOAD_TIME") {
		t.Errorf("bad duration err = %v", err)
	}
	if err := (&SimOptions{}).ApplyEnv(map[string]string{"SGLANG_SIM_CORRUPT_MODE": "shred"}); err == nil {
		t.Error("bad corrupt mode accepted")
	}
}

// TestTestEnv checks that TestEnv, the container form of TestOptions, sets
// the fast timings it documents.
func TestTestEnv(t *testing.T) {
	var o SimOptions
	if err := o.ApplyEnv(envMap(TestEnv())); err != nil {
		t.Fatal(err)
	}
	want := SimOptions{LoadTime: time.Millisecond, DecodeStepTime: time.Millisecond, PrefillTokenTime: time.Microsecond,
		ExportPerMB: -1, HealthPollInterval: 5 * time.Millisecond, Layers: 2}
	if o != want || TestOptions() != want {
		t.Errorf("TestEnv gives %+v, TestOptions %+v; want %+v", o, TestOptions(), want)
	}
}
