package sglangsim

// kernelSpec describes one GPU kernel the way CUPTI reports it. Names are
// demangled names seen in SGLang traces on Hopper (nvjet cuBLAS GEMMs,
// FlashAttention-3, flashinfer norms and activations, NCCL).
type kernelSpec struct {
	name        string
	regs        int
	smem        int
	block       [3]int
	gridX       func(bs, toks int) int // grid x from the batch
	gridY       int
	driver      bool // launched with cuLaunchKernelEx (cuda_driver) rather than cudaLaunchKernel
	blocksPerSM float64
	warpsPerSM  float64
	occupancy   int
}

func fixedGrid(n int) func(int, int) int { return func(int, int) int { return n } }
func perToken(div, minimum int) func(int, int) int {
	return func(_, toks int) int { return max(minimum, (toks+div-1)/div) }
}

var (
	kGemmLarge = &kernelSpec{name: "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_TNT", regs: 168, smem: 213188,
		block: [3]int{384, 1, 1}, gridX: perToken(256, 1), gridY: 66, driver: true, blocksPerSM: 1, warpsPerSM: 12}
	kGemmSmall = &kernelSpec{name: "nvjet_sm90_tst_64x8_64x16_4x1_v_bz_TNT", regs: 168, smem: 197760,
		block: [3]int{128, 1, 1}, gridX: fixedGrid(1), gridY: 128, driver: true, blocksPerSM: 0.969697, warpsPerSM: 3.878788}
	kGemmSplitK = &kernelSpec{name: "nvjet_sm90_tst_64x8_64x16_4x1_v_bz_splitK_TNT", regs: 168, smem: 197760,
		block: [3]int{128, 1, 1}, gridX: fixedGrid(1), gridY: 64, driver: true, blocksPerSM: 0.969697, warpsPerSM: 3.878788}
	kSplitKReduce = &kernelSpec{name: "void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, false, float, __nv_bfloat16, __nv_bfloat16, true, false, false>(cublasLt::cublasSplitKParams<float>, float const*, __nv_bfloat16 const*, __nv_bfloat16*, float const*, float const*, __nv_bfloat16 const*, float const*, __nv_bfloat16*, void*, long, float*, int*, float const*, float const*, float const*, float const*, float const*)",
		regs: 32, smem: 0, block: [3]int{512, 1, 1}, gridX: fixedGrid(8), gridY: 1, blocksPerSM: 0.060606, warpsPerSM: 0.969697, occupancy: 2}
	kLMHead = &kernelSpec{name: "nvjet_sm90_tst_128x256_64x4_2x1_v_bz_coopA_NNT", regs: 168, smem: 213188,
		block: [3]int{384, 1, 1}, gridX: perToken(128, 1), gridY: 594, driver: true, blocksPerSM: 1, warpsPerSM: 12}
	kFusedAddRMSNorm = &kernelSpec{name: "void flashinfer::norm::FusedAddRMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*, unsigned int, unsigned int, unsigned int, float, float)",
		regs: 30, smem: 64, block: [3]int{32, 16, 1}, gridX: perToken(1, 1), gridY: 1, blocksPerSM: 0.5, warpsPerSM: 8, occupancy: 12}
	kRMSNorm = &kernelSpec{name: "void flashinfer::norm::RMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*, unsigned int, unsigned int, unsigned int, float, float)",
		regs: 28, smem: 64, block: [3]int{32, 4, 1}, gridX: perToken(1, 1), gridY: 1, blocksPerSM: 0.5, warpsPerSM: 2, occupancy: 3}
	kRope = &kernelSpec{name: "void flashinfer::BatchQKApplyRotaryPosIdsCosSinCacheHeadParallelismKernel<false, 128u, 8u, 16u, __nv_bfloat16, long>(__nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*, float*, long*, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int)",
		regs: 40, smem: 0, block: [3]int{16, 8, 1}, gridX: perToken(8, 1), gridY: 40, blocksPerSM: 2, warpsPerSM: 8, occupancy: 12}
	kStoreKV = &kernelSpec{name: "void at::native::index_elementwise_kernel<128, 4, at::native::gpu_index_kernel<at::native::index_put_kernel_impl<at::native::OpaqueType<2> >(at::TensorIterator&, c10::ArrayRef<long>, c10::ArrayRef<long>)::{lambda(char*, char const*, long)#1}>(at::TensorIteratorBase&, c10::ArrayRef<long>, c10::ArrayRef<long>, at::native::index_put_kernel_impl<at::native::OpaqueType<2> >(at::TensorIterator&, c10::ArrayRef<long>, c10::ArrayRef<long>)::{lambda(char*, char const*, long)#1} const&)::{lambda(int)#1}>(long, at::native::gpu_index_kernel<at::native::index_put_kernel_impl<at::native::OpaqueType<2> >(at::TensorIterator&, c10::ArrayRef<long>, c10::ArrayRef<long>)::{lambda(char*, char const*, long)#1}>(at::TensorIteratorBase&, c10::ArrayRef<long>, c10::ArrayRef<long>, at::native::index_put_kernel_impl<at::native::OpaqueType<2> >(at::TensorIterator&, c10::ArrayRef<long>, c10::ArrayRef<long>)::{lambda(char*, char const*, long)#1} const&)::{lambda(int)#1})",
		regs: 30, smem: 0, block: [3]int{128, 1, 1}, gridX: perToken(1, 1), gridY: 1, blocksPerSM: 0.5, warpsPerSM: 2, occupancy: 3}
	kPrepareVarlen = &kernelSpec{name: "void flash::prepare_varlen_num_blocks_kernel<1, true>(int, int, int, int const*, int const*, int const*, int const*, int const*, int const*, int, int, int, int, int, cutlass::FastDivmod, cutlass::FastDivmod, int*, int*, bool)",
		regs: 24, smem: 0, block: [3]int{1024, 1, 1}, gridX: fixedGrid(1), gridY: 1, blocksPerSM: 0.007576, warpsPerSM: 0.242424}
	kFlashAttn = &kernelSpec{name: "void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<flash::CollectiveMainloopFwdSm90<2, cute::tuple<cute::C<1>, cute::C<1>, cute::C<1> >, cute::tuple<cute::C<128>, cute::C<128>, cute::C<128> >, 128, cutlass::bfloat16_t, float, cutlass::arch::Sm90, true, false, false, true, true, false, false, true, true, false, false>, flash::CollectiveEpilogueFwd<cute::tuple<cute::C<128>, cute::C<128>, cute::C<128> >, cute::tuple<cute::C<1>, cute::C<1>, cute::C<1> >, cutlass::bfloat16_t, cutlass::arch::Sm90, 256, true, false, false, false>, flash::VarlenDynamicPersistentTileScheduler<128, 128, 256, 128, false, true, true, true, false, true> > > >(flash::FlashAttnFwdSm90<flash::CollectiveMainloopFwdSm90<2, cute::tuple<cute::C<1>, cute::C<1>, cute::C<1> >, cute::tuple<cute::C<128>, cute::C<128>, cute::C<128> >, 128, cutlass::bfloat16_t, float, cutlass::arch::Sm90, true, false, false, true, true, false, false, true, true, false, false>, flash::CollectiveEpilogueFwd<cute::tuple<cute::C<128>, cute::C<128>, cute::C<128> >, cute::tuple<cute::C<1>, cute::C<1>, cute::C<1> >, cutlass::bfloat16_t, cutlass::arch::Sm90, 256, true, false, false, false>, flash::VarlenDynamicPersistentTileScheduler<128, 128, 256, 128, false, true, true, true, false, true> >::Params)",
		regs: 168, smem: 164864, block: [3]int{384, 1, 1}, gridX: fixedGrid(132), gridY: 1, driver: true, blocksPerSM: 1, warpsPerSM: 12, occupancy: 19}
	kSiluAndMul = &kernelSpec{name: "void flashinfer::activation::act_and_mul_kernel<__nv_bfloat16, &(float flashinfer::activation::silu<float>(float const&))>(__nv_bfloat16*, __nv_bfloat16 const*, int)",
		regs: 26, smem: 0, block: [3]int{1024, 1, 1}, gridX: perToken(1, 1), gridY: 1, blocksPerSM: 0.5, warpsPerSM: 16, occupancy: 25}
	kAllReduce = &kernelSpec{name: "ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", regs: 96, smem: 103808,
		block: [3]int{512, 1, 1}, gridX: fixedGrid(4), gridY: 1, driver: true, blocksPerSM: 0.030303, warpsPerSM: 0.484848}
	kSendRecv = &kernelSpec{name: "ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", regs: 96, smem: 103808,
		block: [3]int{512, 1, 1}, gridX: fixedGrid(1), gridY: 1, driver: true, blocksPerSM: 0.007576, warpsPerSM: 0.121212}
	kEmbedding = &kernelSpec{name: "void at::native::(anonymous namespace)::indexSelectLargeIndex<c10::BFloat16, long, unsigned int, 2, 2, -2, true>(at::cuda::detail::TensorInfo<c10::BFloat16, unsigned int>, at::cuda::detail::TensorInfo<c10::BFloat16 const, unsigned int>, at::cuda::detail::TensorInfo<long const, unsigned int>, int, int, unsigned int, unsigned int, long)",
		regs: 32, smem: 0, block: [3]int{128, 1, 1}, gridX: perToken(1, 1), gridY: 1, blocksPerSM: 0.121212, warpsPerSM: 0.484848, occupancy: 1}
	kArgMax = &kernelSpec{name: "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<c10::BFloat16, at::native::ArgMaxOps<float>, unsigned int, long, 4, 4> >(at::native::ReduceOp<c10::BFloat16, at::native::ArgMaxOps<float>, unsigned int, long, 4, 4>)",
		regs: 40, smem: 16, block: [3]int{32, 16, 1}, gridX: perToken(1, 1), gridY: 1, blocksPerSM: 0.060606, warpsPerSM: 0.969697, occupancy: 2}
	kFill = &kernelSpec{name: "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<int>, std::array<char*, 1ul> >(int, at::native::FillFunctor<int>, std::array<char*, 1ul>)",
		regs: 16, smem: 0, block: [3]int{128, 1, 1}, gridX: fixedGrid(1), gridY: 1, blocksPerSM: 0.007576, warpsPerSM: 0.030303}
)
