package trace

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseRankFile(t *testing.T) {
	tests := []struct {
		name    string
		ok      bool
		label   string
		stage   string
		profile string
	}{
		{"1769071195.6634595-TP-0-PP-1.trace.json.gz", true, "[TP00-PP01]", "", "1769071195.6634595"},
		{"myprefix-1769071195.66-TP-3-DP-1-PP-0-EP-3-EXTEND.trace.json.gz", true, "[TP03-DP01-PP00-EP03]", "EXTEND", "myprefix-1769071195.66"},
		{"abc-TP-1-decode.trace.json.gz", true, "[TP01]", "decode", "abc"},
		{"1764201600.000001-TP-12.trace.json", true, "[TP12]", "", "1764201600.000001"},
		{"XTP-1.trace.json.gz", false, "", "", ""}, // TP must start a name part
		{"rank0.json.gz", false, "", "", ""},
		{"1764-TP-0-memory.pickle", false, "", "", ""},
	}
	for _, tc := range tests {
		rf, ok := ParseRankFile(filepath.Join("/data/TP-9/run", tc.name)) // "TP-" in the directory must not count
		if ok != tc.ok {
			t.Errorf("%s: ok = %v", tc.name, ok)
			continue
		}
		if ok && (rf.Rank.Label() != tc.label || rf.Rank.Stage != tc.stage || rf.Profile != tc.profile) {
			t.Errorf("%s: %s stage %q profile %q", tc.name, rf.Rank.Label(), rf.Rank.Stage, rf.Profile)
		}
	}
}

func touch(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiscover(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir,
		"p-999.1-TP-1-DP-0.trace.json.gz", "p-999.1-TP-0-DP-1.trace.json.gz", "p-999.1-TP-0-DP-0.trace.json.gz",
		"p-999.1-TP-1-DP-1.trace.json.gz", "p-999.15-TP-0.trace.json.gz", "merged-p-999.1.trace.json.gz",
		"999-TP-0-memory.pickle", "notes.txt")
	if _, err := Discover(dir, DiscoverOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("two profiles: err = %v", err)
	}
	files, err := Discover(dir, DiscoverOptions{Profile: "p-999.1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Rank.Label())
	}
	// SGLang's order: DP, EP, PP, then TP.
	want := []string{"[TP00-DP00]", "[TP01-DP00]", "[TP00-DP01]", "[TP01-DP01]"}
	if len(got) != len(want) {
		t.Fatalf("files = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order = %v, want %v", got, want)
		}
	}
	if _, err := Discover(dir, DiscoverOptions{Profile: "nope"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown profile: %v", err)
	}
	if _, err := Discover(filepath.Join(dir, "missing"), DiscoverOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing dir: %v", err)
	}

	stages := t.TempDir()
	touch(t, stages, "x-TP-1-DECODE.trace.json.gz", "x-TP-0-DECODE.trace.json.gz", "x-TP-0-EXTEND.trace.json.gz", "x-TP-1-EXTEND.trace.json.gz")
	files, err = Discover(stages, DiscoverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, f := range files {
		order = append(order, f.Rank.String())
	}
	if order[0] != "[TP00] EXTEND" || order[1] != "[TP00] DECODE" || order[2] != "[TP01] EXTEND" {
		t.Errorf("stage order = %v", order)
	}

	generic := t.TempDir()
	touch(t, generic, "rank1.json.gz", "rank0.json.gz")
	files, err = Discover(generic, DiscoverOptions{})
	if err != nil || len(files) != 2 || files[0].Rank.TP != 0 || files[1].Rank.TP != 1 {
		t.Fatalf("generic: %v %+v", err, files)
	}
	if _, err := Discover(t.TempDir(), DiscoverOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("empty dir: %v", err)
	}
}

func TestClassify(t *testing.T) {
	tests := map[string]string{
		"ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)":                                FamilyComm,
		"void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>(c10::BFloat16*)":                 FamilyComm,
		"void cross_device_reduce_1stage<__nv_bfloat16, 8>(RankData*, RankSignals, Signal*, int)":                   FamilyComm,
		"nvjet_sm90_tst_64x8_64x16_4x1_v_bz_TNT":                                                                    FamilyGEMM,
		"Cijk_Alik_Bljk_BBS_BH_Bias_HA_S_SAV_UserArgs_MT256x32x64":                                                  FamilyGEMM,
		"cudnn_generated_fort_native_sdpa_sm80_flash_fprop_wmma_f16_knob_35":                                        FamilyAttention,
		"_ZN7ck_tile6kentryILi2ENS_38FmhaBatchPrefillWithPagedKVCacheKernel":                                        FamilyAttention,
		"void vllm::reshape_and_cache_flash_kernel<__nv_bfloat16, unsigned char, (vllm::Fp8KVCacheDataType)1>":      FamilyKVCache,
		"void (anonymous namespace)::store_kvcache<2048l, 4, false, long>":                                          FamilyKVCache,
		"_ZN5aiter24add_rmsnorm_quant_kernelIDF16bDF16bLi256E":                                                      FamilyNorm,
		"void moe::dev::routing::routingIndicesHistogramKernel<...>":                                                FamilyMoE,
		"_ZN7sgl_hip10activation18act_and_mul_kernelI14__hip_bfloat16":                                              FamilyActivation,
		"void rotary_embedding_kernel<c10::BFloat16, true>":                                                         FamilyRoPE,
		"void at::native::reduce_kernel<512, 1, at::native::ReduceOp<c10::BFloat16, at::native::ArgMaxOps<float>>>": FamilySampling,
		"void vllm::scaled_fp8_quant_kernel_strided<c10::BFloat16, c10::Float8_e4m3fn>":                             FamilyQuantization,
		"void at::native::vectorized_elementwise_kernel<8, at::native::FillFunctor<c10::BFloat16>>":                 FamilyElementwise,
		"void flashinfer::norm::FusedAddRMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*)":                           FamilyNorm,
		"void flashinfer::activation::act_and_mul_kernel<__nv_bfloat16, &silu>(__nv_bfloat16*)":                     FamilyActivation,
		"void flashinfer::BatchPrefillWithPagedKVCacheKernel<KernelTraits>(Params)":                                 FamilyAttention,
		"void flashinfer::sampling::TopKTopPSamplingFromProbKernel<1024u, (cub::BlockScanAlgorithm)2>":              FamilySampling,
		"void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<Ktraits>>>(Params)":        FamilyAttention,
		"memcpy32_post":      FamilyMemcpy,
		"some_custom_kernel": FamilyOther,
	}
	for name, want := range tests {
		if got := Classify(name, "kernel"); got != want {
			t.Errorf("Classify(%.60s) = %s, want %s", name, got, want)
		}
	}
	if Classify("Memcpy DtoD (Device -> Device)", "gpu_memcpy") != FamilyMemcpy || Classify("Memset (Device)", "gpu_memset") != FamilyMemset {
		t.Error("memcpy/memset categories")
	}
}

func TestShortName(t *testing.T) {
	tests := map[string]string{
		"void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float, true>(int, float)":                "at::native::vectorized_layer_norm_kernel",
		"void at::native::vectorized_elementwise_kernel<8, at::native::CUDAFunctor_add<c10::BFloat16>, std::array<char*, 3ul> >(int)": "at::native::vectorized_elementwise_kernel [CUDAFunctor_add]",
		"ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)":                                                  "ncclDevKernel_AllReduce_Sum_bf16_RING_LL",
	}
	for in, want := range tests {
		if got := ShortName(in, 0); got != want {
			t.Errorf("ShortName(%.50s) = %q, want %q", in, got, want)
		}
	}
}
