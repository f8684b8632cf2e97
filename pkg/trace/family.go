package trace

import "strings"

// Kernel families. Names are stable (they appear in summary.json and diffs).
const (
	FamilyComm         = "communication"
	FamilyAttention    = "attention"
	FamilyMoE          = "moe"
	FamilyGEMM         = "gemm"
	FamilyNorm         = "norm"
	FamilyActivation   = "activation"
	FamilyRoPE         = "rope"
	FamilyKVCache      = "kv_cache"
	FamilySampling     = "sampling"
	FamilyQuantization = "quantization"
	FamilyElementwise  = "elementwise"
	FamilyMemcpy       = "memcpy"
	FamilyMemset       = "memset"
	FamilyOther        = "other"
)

// Families lists every family in report order.
var Families = []string{FamilyGEMM, FamilyAttention, FamilyMoE, FamilyComm, FamilyNorm, FamilyActivation,
	FamilyRoPE, FamilyKVCache, FamilySampling, FamilyQuantization, FamilyElementwise, FamilyMemcpy, FamilyMemset, FamilyOther}

type familyRule struct {
	family string
	subs   []string
}

// familyRules are tried in order on the lower-cased kernel name; the first
// match wins, so specific families come before the generic ones whose
// substrings they may contain (an "add_rmsnorm_quant" kernel is a norm, a
// "multimem_all_reduce" one communication, not elementwise). Attention
// matches FlashAttention's names, not "flash": FlashInfer prefixes all its
// kernels (norms, activations, sampling) with "flashinfer::".
var familyRules = []familyRule{
	{FamilyComm, []string{"nccl", "rccl", "hccl", "mscclpp", "cross_device_reduce", "all_reduce", "allreduce",
		"all_gather", "allgather", "reduce_scatter", "reducescatter", "alltoall", "all_to_all", "multimem_",
		"one_shot_", "two_shot_", "deep_ep", "deepep", "custom_ar", "quickreduce", "symm_mem", "nvshmem"}},
	{FamilyMemcpy, []string{"memcpy"}},
	{FamilyMemset, []string{"memset"}},
	{FamilyKVCache, []string{"store_kvcache", "reshape_and_cache", "set_kv_buffer", "kv_buffer", "store_kv",
		"write_kv", "copy_to_kv", "save_kv", "concat_and_cache"}},
	{FamilyAttention, []string{"attention", "attn", "flash::", "flash_fwd", "flash_bwd", "flash_fprop", "flashattn", "fmha", "sdpa", "mha_", "_mha", "mla_", "_mla",
		"batchprefill", "batchdecode", "prefillwithkvcache", "decodewithkvcache", "paged_attention", "xqa",
		"merge_state", "_fwd_kernel", "unified_attention"}},
	{FamilyMoE, []string{"moe", "expert", "fused_experts", "topk_softmax", "grouped_topk", "routing"}},
	{FamilyGEMM, []string{"gemm", "gemv", "nvjet", "cutlass", "cublas", "xmma", "cijk_", "matmul", "bmm_",
		"_bmm", "splitkreduce", "wgmma", "scudnn", "implicit_gemm", "convolution", "conv2d", "conv_", "hgemm", "sgemm", "deep_gemm", "fp8_mm", "_mm_"}},
	{FamilyNorm, []string{"norm", "bn_fw", "bn_bw"}},
	{FamilyActivation, []string{"silu", "gelu", "swiglu", "act_and_mul", "relu", "sigmoid", "tanh"}},
	{FamilyRoPE, []string{"rotary", "rope"}},
	{FamilySampling, []string{"sampling", "sampler", "argmax", "top_k", "topk", "top_p", "multinomial"}},
	{FamilyQuantization, []string{"quant", "fp8", "fp4", "int8", "e4m3", "mxfp"}},
	{FamilyElementwise, []string{"elementwise", "vectorized_", "unrolled_", "fillfunctor", "catarraybatchedcopy",
		"index", "gather", "scatter", "reduce_kernel", "copy", "triton_poi", "triton_red", "fill", "cast", "add_kernel", "mul_kernel"}},
}

// Classify returns the family of a GPU activity from its name and category
// ("kernel", "gpu_memcpy", "gpu_memset").
func Classify(name, cat string) string {
	switch cat {
	case "gpu_memcpy":
		return FamilyMemcpy
	case "gpu_memset":
		return FamilyMemset
	}
	n := strings.ToLower(name)
	for _, r := range familyRules {
		for _, s := range r.subs {
			if strings.Contains(n, s) {
				return r.family
			}
		}
	}
	return FamilyOther
}

// IsComm reports whether a family is communication.
func IsComm(family string) bool { return family == FamilyComm }
