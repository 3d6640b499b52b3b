// Index ops with i64 index tensors: index_select and gather (which only move elements, so they
// come per element width: `_b4` for f32, `_b8` for f64 and i64), index_add and scatter_add
// (floating-point atomicAdd into the output, `_f32` / `_f64`; atomicAdd on double needs sm_60).
//
// Out-of-range indices (negative, or not below the size of the indexed axis) are not an error
// on the device (raising one would need a host sync): a select or gather reads 0 for them (all
// bits clear: 0.0 or 0), an add skips them. The engine can check on the host first
// (RCMCL_CUDA_CHECK_INDICES=1), returning the CPU's error.
//
// The adds accumulate with atomics, so the order in which repeated indices add up (and so the
// last bits of a float sum) can differ between runs.
//
// Index arithmetic is 32-bit when the engine says every index and offset fits (`wide == 0`),
// 64-bit otherwise. Kernel signatures must match `engine/src/ops/index/cuda.rs`.

#define RCMCL_MAX_DIMS 8

#define RCMCL_ARGS8(p) i64 p##0, i64 p##1, i64 p##2, i64 p##3, i64 p##4, i64 p##5, i64 p##6, i64 p##7
#define RCMCL_SET8(dst, p)                                                                       \
    dst[0] = p##0; dst[1] = p##1; dst[2] = p##2; dst[3] = p##3;                                  \
    dst[4] = p##4; dst[5] = p##5; dst[6] = p##6; dst[7] = p##7;

typedef unsigned int w4;        // a 4-byte element
typedef unsigned long long w8;  // an 8-byte element

__device__ __forceinline__ bool in_range(i64 v, i64 size) { return v >= 0 && v < size; }

// ----- index_select / index_add ---------------------------------------------------------------

// The input seen as (outer, size, inner) around the indexed axis; n indices.
// out[o, j, k] = src[o, idx[j], k] for every output element.
template <typename I, typename T>
__device__ void index_select_loop(const T* __restrict__ src, const i64* __restrict__ idx, T* __restrict__ out,
                                  i64 total, i64 n, i64 size, i64 inner) {
    RCMCL_FOR_EACH(i, total) {
        const I r = (I)i / (I)inner;
        const I k = (I)i - r * (I)inner;
        const I o = r / (I)n;
        const I j = r - o * (I)n;
        const i64 v = idx[j];
        out[i] = in_range(v, size) ? src[(o * (I)size + (I)v) * (I)inner + k] : T(0);
    }
}

#define RCMCL_INDEX_SELECT(T, NAME)                                                              \
    extern "C" __global__ void NAME(const T* src, const i64* idx, T* out, i64 total, i64 n,        \
                                    i64 size, i64 inner, int wide) {                             \
        if (wide) index_select_loop<u64>(src, idx, out, total, n, size, inner);                  \
        else index_select_loop<u32>(src, idx, out, total, n, size, inner);                       \
    }

RCMCL_INDEX_SELECT(w4, index_select_b4)
RCMCL_INDEX_SELECT(w8, index_select_b8)

// out[o, idx[j], k] += src[o, j, k] for every source element (src is (outer, n, inner)).
template <typename I, typename T>
__device__ void index_add_loop(const T* __restrict__ src, const i64* __restrict__ idx, T* out, i64 total, i64 n,
                               i64 size, i64 inner) {
    RCMCL_FOR_EACH(i, total) {
        const I r = (I)i / (I)inner;
        const I k = (I)i - r * (I)inner;
        const I o = r / (I)n;
        const I j = r - o * (I)n;
        const i64 v = idx[j];
        if (in_range(v, size)) atomicAdd(out + (o * (I)size + (I)v) * (I)inner + k, src[i]);
    }
}

#define RCMCL_INDEX_ADD(T, NAME)                                                                 \
    extern "C" __global__ void NAME(const T* src, const i64* idx, T* out, i64 total, i64 n,        \
                                    i64 size, i64 inner, int wide) {                             \
        if (wide) index_add_loop<u64>(src, idx, out, total, n, size, inner);                     \
        else index_add_loop<u32>(src, idx, out, total, n, size, inner);                          \
    }

RCMCL_INDEX_ADD(float, index_add_f32)
RCMCL_INDEX_ADD(double, index_add_f64)

// ----- gather / scatter_add -------------------------------------------------------------------

// The index tensor's layout (outermost first, simplified by the engine) and, per buffer, the
// element strides over it. Along the indexed axis the output (gather's source, scatter's
// destination) has stride 0 here: its coordinate there is the index value, times `axis_stride`.
template <int K> struct Walk {
    int rank;
    i64 dim[RCMCL_MAX_DIMS];
    i64 stride[K][RCMCL_MAX_DIMS];
};

template <typename I, int K> __device__ __forceinline__ void walk_offsets(I i, const Walk<K>& w, I (&off)[K]) {
#pragma unroll
    for (int j = 0; j < K; ++j) off[j] = 0;
#pragma unroll
    for (int k = RCMCL_MAX_DIMS - 1; k >= 1; --k) {
        if (k < w.rank) {
            const I d = (I)w.dim[k];
            const I q = i / d;
            const I c = i - q * d;
            i = q;
#pragma unroll
            for (int j = 0; j < K; ++j) off[j] += c * (I)w.stride[j][k];
        }
    }
#pragma unroll
    for (int j = 0; j < K; ++j) off[j] += i * (I)w.stride[j][0];
}

// out[m] = src[m with m[axis] = idx[m]] for every position m of the index (= output) tensor.
template <typename I, typename T>
__device__ void gather_loop(const T* __restrict__ src, const i64* __restrict__ idx, T* __restrict__ out, i64 n,
                            i64 size, i64 axis_stride, const Walk<1>& w) {
    RCMCL_FOR_EACH(i, n) {
        const i64 v = idx[i];
        if (in_range(v, size)) {
            I off[1];
            walk_offsets<I, 1>((I)i, w, off);
            out[i] = src[off[0] + (I)v * (I)axis_stride];
        } else {
            out[i] = T(0);
        }
    }
}

#define RCMCL_GATHER(T, NAME)                                                                    \
    extern "C" __global__ void NAME(const T* src, const i64* idx, T* out, i64 n, i64 size,         \
                                    i64 axis_stride, int wide, int rank, RCMCL_ARGS8(d),         \
                                    RCMCL_ARGS8(s)) {                                            \
        Walk<1> w;                                                                               \
        w.rank = rank;                                                                           \
        RCMCL_SET8(w.dim, d)                                                                     \
        RCMCL_SET8(w.stride[0], s)                                                               \
        if (wide) gather_loop<u64>(src, idx, out, n, size, axis_stride, w);                      \
        else gather_loop<u32>(src, idx, out, n, size, axis_stride, w);                           \
    }

RCMCL_GATHER(w4, gather_b4)
RCMCL_GATHER(w8, gather_b8)

// out[m with m[axis] = idx[m]] += src[m] for every position m of the index tensor; stride[0]
// walks src, stride[1] walks out (0 along the axis).
template <typename I, typename T>
__device__ void scatter_add_loop(const T* __restrict__ src, const i64* __restrict__ idx, T* out, i64 n, i64 size,
                                 i64 axis_stride, const Walk<2>& w) {
    RCMCL_FOR_EACH(i, n) {
        const i64 v = idx[i];
        if (in_range(v, size)) {
            I off[2];
            walk_offsets<I, 2>((I)i, w, off);
            atomicAdd(out + off[1] + (I)v * (I)axis_stride, src[off[0]]);
        }
    }
}

#define RCMCL_SCATTER_ADD(T, NAME)                                                               \
    extern "C" __global__ void NAME(const T* src, const i64* idx, T* out, i64 n, i64 size,         \
                                    i64 axis_stride, int wide, int rank, RCMCL_ARGS8(d),         \
                                    RCMCL_ARGS8(ss), RCMCL_ARGS8(so)) {                          \
        Walk<2> w;                                                                               \
        w.rank = rank;                                                                           \
        RCMCL_SET8(w.dim, d)                                                                     \
        RCMCL_SET8(w.stride[0], ss)                                                              \
        RCMCL_SET8(w.stride[1], so)                                                              \
        if (wide) scatter_add_loop<u64>(src, idx, out, n, size, axis_stride, w);                 \
        else scatter_add_loop<u32>(src, idx, out, n, size, axis_stride, w);                      \
    }

RCMCL_SCATTER_ADD(float, scatter_add_f32)
RCMCL_SCATTER_ADD(double, scatter_add_f64)
