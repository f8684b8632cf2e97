package gpu

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want Version
		bad  bool
	}{
		{in: "570", want: Version{570}},
		{in: "580.65.06", want: Version{580, 65, 6}},
		{in: " 570.172.08\n", want: Version{570, 172, 8}},
		{in: "13.580.159.04", want: Version{13, 580, 159, 4}},
		{in: "", bad: true},
		{in: "abc", bad: true},
		{in: "535.x", bad: true},
		{in: "570..1", bad: true},
		{in: "570.", bad: true},
		{in: ".570", bad: true},
		{in: "-570", bad: true},
		{in: "+570", bad: true},
		{in: "570.26a", bad: true},
		{in: "570 .26", bad: true},
		{in: "99999999999999999999999", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVersion(tt.in)
			if tt.bad {
				if err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("ParseVersion(%q) = %v, %v; want an invalid-argument error", tt.in, got, err)
				}
				if !strings.Contains(err.Error(), "dotted") && !strings.Contains(err.Error(), "range") {
					t.Errorf("error %q does not say what was expected", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseVersion(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestVersion_Compare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"570", "570.0.0", 0},
		{"570.172.08", "570.26", 1}, // numeric, not lexical: 172 > 26
		{"570.9", "570.10", -1},     // 9 < 10
		{"99.1", "100", -1},         // more digits is newer
		{"580.159.04", "580.65.06", 1},
		{"580.65.06", "580.65.6", 0}, // leading zeros carry no meaning
		{"565.57.01", "570", -1},
		{"575.51.03", "575.51.02", 1},
	}
	for _, tt := range tests {
		got := MustParseVersion(tt.a).Compare(MustParseVersion(tt.b))
		if got != tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if back := MustParseVersion(tt.b).Compare(MustParseVersion(tt.a)); back != -tt.want {
			t.Errorf("Compare(%s, %s) = %d, want %d (antisymmetry)", tt.b, tt.a, back, -tt.want)
		}
	}
}

func TestParseCUDAVersion(t *testing.T) {
	tests := []struct {
		in   string
		want string
		bad  bool
	}{
		{in: "13.0.2", want: "13.0"},
		{in: "CUDA_VERSION=13.0.2", want: "13.0"},
		{in: "12.8.1.012", want: "12.8"},
		{in: "12.8", want: "12.8"},
		{in: "v12.9.1", want: "12.9"},
		{in: "cuda12.6", want: "12.6"},
		{in: "cuda-12.4.1", want: "12.4"},
		{in: "", bad: true},
		{in: "13", bad: true},
		{in: "12.x", bad: true},
		{in: "thirteen", bad: true},
		{in: "CUDA_VERSION=", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCUDAVersion(tt.in)
			if tt.bad {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("ParseCUDAVersion(%q) = %v, %v; want invalid argument", tt.in, got, err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("ParseCUDAVersion(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestImageCUDAVersion(t *testing.T) {
	env := []string{"PATH=/usr/bin", "CUDA_VERSION=12.9.1", "NV_CUDA_LIB_VERSION=12.9.1-1"}
	labels := map[string]string{"com.nvidia.cuda.version": "12.8.0.038"}
	if got := ImageCUDAVersion(labels, env); got != "12.9.1" {
		t.Errorf("env and label: got %q, want the env's 12.9.1", got)
	}
	if got := ImageCUDAVersion(labels, []string{"PATH=/usr/bin"}); got != "12.8.0.038" {
		t.Errorf("label only: got %q, want 12.8.0.038", got)
	}
	if got := ImageCUDAVersion(nil, []string{"CUDA_VERSION_X=1"}); got != "" {
		t.Errorf("nothing declared: got %q, want empty", got)
	}
}

func TestCUDADriverTable(t *testing.T) {
	// The gate's documented anchors; a table edit must keep them.
	for cuda, want := range map[string]string{"12.8": "570.26", "12.9": "575.51.03", "13.0": "580.65.06", "12.4": "550.54.14"} {
		c, _ := ParseCUDAVersion(cuda)
		if got, ok := MinDriverForCUDA(c); !ok || got != want {
			t.Errorf("MinDriverForCUDA(%s) = %q, %v; want %s", cuda, got, ok, want)
		}
	}
	if _, ok := MinDriverForCUDA(CUDAVersion{12, 7}); ok {
		t.Error("CUDA 12.7 was never released and must not be listed")
	}
	// Sorted by CUDA version and by driver: a newer CUDA never needs an
	// older driver, which is what makes the fallbacks sound.
	for i := 1; i < len(cudaDriverTable); i++ {
		prev, cur := cudaDriverTable[i-1], cudaDriverTable[i]
		pc, _ := ParseCUDAVersion(prev.cuda)
		cc, _ := ParseCUDAVersion(cur.cuda)
		if !pc.Less(cc) {
			t.Errorf("table not sorted: %s before %s", prev.cuda, cur.cuda)
		}
		if MustParseVersion(prev.driver).Compare(MustParseVersion(cur.driver)) >= 0 {
			t.Errorf("CUDA %s needs %s but the newer %s needs %s", prev.cuda, prev.driver, cur.cuda, cur.driver)
		}
	}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name       string
		policy     Policy
		driver     string
		driverCUDA int
		image      string

		ok          bool
		required    string
		fwd         bool
		msgHas      []string // the message says found vs needed (and the action on failure)
		hintHas     string
		warningsHas string
	}{
		{name: "below min", policy: Policy{MinDriver: "570"}, driver: "565.57.01", driverCUDA: 12070,
			required: "570", msgHas: []string{"565.57.01", ">= 570", "upgrade"}, hintHas: "gpu.min_driver"},
		{name: "at min", policy: Policy{MinDriver: "570"}, driver: "570", ok: true, required: "570"},
		{name: "at min with more digits", policy: Policy{MinDriver: "570.26"}, driver: "570.26.0", ok: true, required: "570.26"},
		{name: "above min", policy: Policy{MinDriver: "570"}, driver: "580.159.04", driverCUDA: 13000, ok: true, required: "570",
			msgHas: []string{"580.159.04", "570"}},
		{name: "empty min is the default 570", driver: "565.57.01", required: "570", msgHas: []string{">= 570"}},
		{name: "numeric not lexical", policy: Policy{MinDriver: "570.26"}, driver: "570.172.08", ok: true, required: "570.26"},
		{name: "malformed driver", policy: Policy{MinDriver: "570"}, driver: "580.xx", required: "570",
			msgHas: []string{`"580.xx"`}, hintHas: "nvidia-smi"},
		{name: "empty driver", policy: Policy{MinDriver: "570"}, driver: "", required: "570", msgHas: []string{`""`}},
		{name: "malformed min", policy: Policy{MinDriver: "570.x"}, driver: "580.65.06", required: "570.x",
			msgHas: []string{"gpu.min_driver", "570.x"}, hintHas: "580.65.06"},

		{name: "cuda 13.0 below", policy: Policy{MinDriver: "570"}, driver: "570.172.08", driverCUDA: 12080, image: "CUDA_VERSION=13.0.2",
			required: "580.65.06", msgHas: []string{"570.172.08", "CUDA 13.0", ">= 580.65.06", "upgrade"}, hintHas: "allow_forward_compat"},
		{name: "cuda 13.0 exactly", policy: Policy{MinDriver: "570"}, driver: "580.65.06", driverCUDA: 13000, image: "13.0.2",
			ok: true, required: "580.65.06", msgHas: []string{"CUDA 13.0", "580.65.06"}},
		{name: "cuda 13.0 above", policy: Policy{MinDriver: "570"}, driver: "580.159.04", driverCUDA: 13000, image: "13.0",
			ok: true, required: "580.65.06"},
		{name: "cuda 12.8 GA floor", policy: Policy{MinDriver: "570"}, driver: "570.26", driverCUDA: 12080, image: "12.8.1",
			ok: true, required: "570.26"},
		{name: "cuda 12.9 below", policy: Policy{MinDriver: "570"}, driver: "570.172.08", driverCUDA: 12080, image: "12.9.1",
			required: "575.51.03", msgHas: []string{"575.51.03"}},
		{name: "min above cuda need", policy: Policy{MinDriver: "575"}, driver: "580.65.06", image: "12.4", ok: true, required: "575"},
		{name: "forward compat passes with warning", policy: Policy{MinDriver: "570", AllowForwardCompat: true}, driver: "570.172.08",
			driverCUDA: 12080, image: "13.0.2", ok: true, fwd: true, required: "570", warningsHas: "forward-compatibility"},
		{name: "forward compat never relaxes min_driver", policy: Policy{MinDriver: "570", AllowForwardCompat: true}, driver: "560.35.03",
			image: "12.6", required: "570", msgHas: []string{"560.35.03", ">= 570"}},
		{name: "unlisted cuda, driver supports it", policy: Policy{MinDriver: "570"}, driver: "590.44.01", driverCUDA: 13010,
			image: "13.1.0", ok: true, required: "570", msgHas: []string{"13.1"}},
		{name: "unlisted cuda, driver too old", policy: Policy{MinDriver: "570"}, driver: "580.159.04", driverCUDA: 13000,
			image: "13.1.0", required: "570", msgHas: []string{"CUDA up to 13.0", "CUDA 13.1"}, hintHas: "CUDA 13.0 or older"},
		{name: "unlisted cuda, no driver cuda", policy: Policy{MinDriver: "570"}, driver: "580.159.04", image: "14.0",
			ok: true, required: "570", warningsHas: "not in sglangd's driver table"},
		{name: "malformed image cuda warns only", policy: Policy{MinDriver: "570"}, driver: "580.159.04", image: "latest",
			ok: true, required: "570", warningsHas: `"latest"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Evaluate(tt.policy, tt.driver, tt.driverCUDA, tt.image)
			if v.OK != tt.ok || v.Required != tt.required || v.ForwardCompat != tt.fwd {
				t.Fatalf("verdict ok=%v required=%q fwd=%v, want ok=%v required=%q fwd=%v (%s)",
					v.OK, v.Required, v.ForwardCompat, tt.ok, tt.required, tt.fwd, v.Message)
			}
			for _, s := range tt.msgHas {
				if !strings.Contains(v.Message, s) {
					t.Errorf("message %q lacks %q", v.Message, s)
				}
			}
			if !strings.Contains(v.Hint, tt.hintHas) {
				t.Errorf("hint %q lacks %q", v.Hint, tt.hintHas)
			}
			if tt.warningsHas != "" && !strings.Contains(strings.Join(v.Warnings, "\n"), tt.warningsHas) {
				t.Errorf("warnings %q lack %q", v.Warnings, tt.warningsHas)
			}
			err := v.Err()
			if tt.ok {
				if err != nil {
					t.Errorf("passing verdict has error %v", err)
				}
				return
			}
			if !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Errorf("error %v is not a failed precondition", err)
			}
			var h interface{ Hint() string }
			if !errors.As(err, &h) || h.Hint() != v.Hint {
				t.Errorf("error does not carry the hint %q", v.Hint)
			}
		})
	}
}

func TestManager_Gate(t *testing.T) {
	ctx := context.Background()
	// The DGX-H100 mock's own driver, 550.54.15, is below SGLang's 570.
	h := newFakeHost(t, 2, "550.54.15", 12040)
	m, _, _ := newTestManager(t, h, Options{})
	v, err := m.Gate(ctx, "")
	var ge *GateError
	if !errors.As(err, &ge) || !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Gate on 550.54.15 = %+v, %v; want a failed-precondition GateError", v, err)
	}
	if v.Driver != "550.54.15" || v.DriverCUDA != "12.4" || v.Required != "570" {
		t.Errorf("verdict = %+v; want driver 550.54.15, CUDA 12.4, required 570", v)
	}
	if want := "NVIDIA driver 550.54.15 is too old: gpu.min_driver needs >= 570; upgrade the NVIDIA driver to 570 or newer"; err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}

	h2 := newFakeHost(t, 2, "580.159.04", 13000)
	m2, _, _ := newTestManager(t, h2, Options{Policy: Policy{MinDriver: "570"}})
	if v, err := m2.Gate(ctx, "CUDA_VERSION=13.0.2"); err != nil || !v.OK || v.Required != "580.65.06" {
		t.Errorf("Gate(13.0.2) on 580.159.04 = %+v, %v; want OK requiring 580.65.06", v, err)
	}
	if v, err := m2.Gate(ctx, "13.1"); err == nil || v.OK {
		t.Errorf("Gate(13.1) on a CUDA 13.0 driver = %+v, %v; want a failure", v, err)
	}
}
