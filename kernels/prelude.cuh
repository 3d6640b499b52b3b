// Definitions shared by every kernel family. The engine prepends this file to each family before
// NVRTC compiles it (NVRTC has no standard headers, so nothing here includes one).
//
// Conventions for all families:
// - Kernels are `extern "C"` so the engine finds them by name; a kernel with a float type comes in
//   `_f32` and `_f64` versions, thin wrappers over one template body.
// - Sizes and offsets are `i64`; loops over elements are grid-stride loops, so any grid size is
//   correct and the engine can cap the grid.
// - Reductions are deterministic: each output is reduced by one block (or one warp) in a fixed
//   order; no floating-point atomics except where a family says so (scatter_add, index_add).

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;

#define RCMCL_FULL_MASK 0xffffffffu

// Grid-stride loop over [0, n).
#define RCMCL_FOR_EACH(i, n)                                                                     \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                            \
         i += (i64)blockDim.x * gridDim.x)

template <typename T> __device__ __forceinline__ T rcmcl_infinity();
template <> __device__ __forceinline__ float rcmcl_infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double rcmcl_infinity<double>() { return __longlong_as_double(0x7ff0000000000000ll); }

template <typename T> __device__ __forceinline__ T rcmcl_nan();
template <> __device__ __forceinline__ float rcmcl_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double rcmcl_nan<double>() { return __longlong_as_double(0x7ff8000000000000ll); }

// max/min that propagate NaN, as the CPU reference and PyTorch do (fmax would drop it).
template <typename T> __device__ __forceinline__ T rcmcl_max(T a, T b) { return (a != a || a > b) ? a : b; }
template <typename T> __device__ __forceinline__ T rcmcl_min(T a, T b) { return (a != a || a < b) ? a : b; }

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(RCMCL_FULL_MASK, v, offset);
    return v;
}

template <typename T> __device__ __forceinline__ T warp_max(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = rcmcl_max(v, __shfl_xor_sync(RCMCL_FULL_MASK, v, offset));
    return v;
}

template <typename T> __device__ __forceinline__ T warp_min(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = rcmcl_min(v, __shfl_xor_sync(RCMCL_FULL_MASK, v, offset));
    return v;
}

// Sum over the block; every thread gets the result. blockDim.x must be a multiple of 32 (at most
// 1024) and every thread of the block must call it. `scratch` is 32 elements of shared memory.
template <typename T> __device__ T block_sum(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // a previous call may still be reading scratch[0]
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? scratch[lane] : T(0);
        v = warp_sum(v);
        if (lane == 0) scratch[0] = v;
    }
    __syncthreads();
    return scratch[0];
}

// Maximum over the block (NaN propagates); same rules as block_sum.
template <typename T> __device__ T block_max(T v, T* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? scratch[lane] : -rcmcl_infinity<T>();
        v = warp_max(v);
        if (lane == 0) scratch[0] = v;
    }
    __syncthreads();
    return scratch[0];
}

// The counter-based uniform number in [0, 1) of element `index` under `seed`. Bit for bit the
// CPU's `engine::ops::dropout::dropout_uniform`: SplitMix64's output function applied to the
// mixed seed plus (index + 1) times the golden-ratio increment, top 53 bits.
__device__ __forceinline__ u64 rcmcl_mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ double rcmcl_uniform(u64 seed, u64 index) {
    const u64 golden = 0x9E3779B97F4A7C15ull;
    const u64 key = rcmcl_mix64(seed + golden);
    const u64 bits = rcmcl_mix64(key + (index + 1ull) * golden);
    return (double)(bits >> 11) * (1.0 / 9007199254740992.0);
}
