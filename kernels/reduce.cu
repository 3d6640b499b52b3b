// Reductions (ops/reduce/cuda.rs): sum, max and min over any set of axes, argmax along one axis.
//
// The engine reduces one group of adjacent reduced axes per pass (always the last such group),
// seeing the tensor around it as (outer, n, inner):
// - inner == 1, "rows" (each output is a contiguous run): rows of at most 512 elements go to groups
//   of `width` lanes of one warp (a power of two up to 32; shuffles only, several rows per warp when
//   rows are short); longer rows go to one 256-thread block per chunk of `chunk` elements
//   (warp shuffles, then the warps' results through shared memory).
// - inner > 1 with many outputs (or a short n), "cols": one thread per output walks its column;
//   consecutive threads take consecutive inner indices, so reads coalesce.
// - otherwise inner > 1, "mid": a block covers W = min(inner, 32) consecutive inner indices of one outer
//   index and a chunk of `chunk` positions along n. Its 256 threads form G = 256 / W rows of W
//   columns, so the threads of a warp read consecutive addresses; each thread folds every G-th
//   position of its column, and the G partial results of a column are joined by a fixed tree in
//   shared memory.
// A pass whose extent needs `chunks` > 1 chunks writes that many partial results per output, laid
// out (outer, chunks, inner), and the next pass reduces those the same way (so a sum of 10^7
// elements is 611 blocks, then one). Sums of f32 carry their partial results in f64.
//
// Chunk sizes are functions of the shape only, and every thread folds its elements in index order,
// so the order of every floating-point operation is fixed: results are bitwise reproducible from
// run to run (no atomics). Max/min propagate NaN (rcmcl_max/rcmcl_min); argmax returns the index
// of the first maximum, a NaN counting as larger than everything (the first NaN wins), like the CPU.
//
// Every kernel expects blockDim.x == REDUCE_THREADS. Op codes must match ops/reduce/cuda.rs.

#define REDUCE_THREADS 256

enum ReduceCode { R_SUM = 0, R_MAX = 1, R_MIN = 2 };

__device__ __forceinline__ i64 imin(i64 a, i64 b) { return a < b ? a : b; }

__device__ __forceinline__ float shfl_xor(float v, int m) { return __shfl_xor_sync(RCMCL_FULL_MASK, v, m); }
__device__ __forceinline__ double shfl_xor(double v, int m) { return __shfl_xor_sync(RCMCL_FULL_MASK, v, m); }
__device__ __forceinline__ i64 shfl_xor(i64 v, int m) { return __shfl_xor_sync(RCMCL_FULL_MASK, v, m); }

// ----- reducers: the state a thread folds elements into, and how two states join ---------------
//
// `load(x, xi, off, k)` is the state of one element: at offset `off`, position `k` along the
// reduced extent; `xi` holds the positions of a previous pass's partial results (argmax only).
// `join` must be symmetric (join(a, b) == join(b, a)) so every lane of a shuffle butterfly agrees.

template <typename In> struct SumR {
    typedef double S;
    static __device__ __forceinline__ S empty() { return 0.0; }
    static __device__ __forceinline__ S load(const In* x, const i64*, i64 off, i64) { return (double)x[off]; }
    static __device__ __forceinline__ S join(S a, S b) { return a + b; }
    template <typename Out> static __device__ __forceinline__ void store(Out* out, i64*, i64 o, S s) { out[o] = (Out)s; }
};

template <typename In, bool LARGEST> struct ExtremeR {
    typedef In S;
    static __device__ __forceinline__ S empty() { return LARGEST ? -rcmcl_infinity<In>() : rcmcl_infinity<In>(); }
    static __device__ __forceinline__ S load(const In* x, const i64*, i64 off, i64) { return x[off]; }
    static __device__ __forceinline__ S join(S a, S b) { return LARGEST ? rcmcl_max(a, b) : rcmcl_min(a, b); }
    template <typename Out> static __device__ __forceinline__ void store(Out* out, i64*, i64 o, S s) { out[o] = (Out)s; }
};

template <typename T> struct ArgPair {
    T v;
    i64 i;
};

template <typename T> __device__ __forceinline__ ArgPair<T> shfl_xor(ArgPair<T> p, int m) {
    ArgPair<T> r;
    r.v = shfl_xor(p.v, m);
    r.i = shfl_xor(p.i, m);
    return r;
}

// Argmax: the order is NaN above every number, then by value, ties to the lower position. That is
// the CPU's "first maximum, or first NaN" whatever order the pairs meet in.
template <typename T> struct ArgmaxR {
    typedef ArgPair<T> S;
    static __device__ __forceinline__ S empty() {
        S s;
        s.v = -rcmcl_infinity<T>();
        s.i = 0x7fffffffffffffffll;  // loses every tie, so an all -inf run gives its first position
        return s;
    }
    static __device__ __forceinline__ S load(const T* x, const i64* xi, i64 off, i64 k) {
        S s;
        s.v = x[off];
        s.i = xi != nullptr ? xi[off] : k;
        return s;
    }
    // Whether b comes before a.
    static __device__ __forceinline__ bool before(S b, S a) {
        const bool an = a.v != a.v, bn = b.v != b.v;
        if (an || bn) return bn && (!an || b.i < a.i);
        return b.v > a.v || (b.v == a.v && b.i < a.i);
    }
    static __device__ __forceinline__ S join(S a, S b) { return before(b, a) ? b : a; }
    // `vals` is null on the last pass (only the positions are wanted).
    static __device__ __forceinline__ void store(T* vals, i64* idx, i64 o, S s) {
        if (vals != nullptr) vals[o] = s.v;
        idx[o] = s.i;
    }
};

// ----- the loops ------------------------------------------------------------------------------

// Folds the elements at positions first, first + step, ... (< end) into `s`, in that order; the
// loads of four positions are issued before they are joined, to keep memory busy.
template <class R, typename In>
__device__ __forceinline__ typename R::S fold_strided(typename R::S s, const In* x, const i64* xi, i64 base,
                                                     i64 stride, i64 first, i64 end, i64 step) {
    typedef typename R::S S;
    i64 k = first;
    for (; k + 3 * step < end; k += 4 * step) {
        const S a = R::load(x, xi, base + k * stride, k);
        const S b = R::load(x, xi, base + (k + step) * stride, k + step);
        const S c = R::load(x, xi, base + (k + 2 * step) * stride, k + 2 * step);
        const S d = R::load(x, xi, base + (k + 3 * step) * stride, k + 3 * step);
        s = R::join(R::join(R::join(R::join(s, a), b), c), d);
    }
    for (; k < end; k += step) s = R::join(s, R::load(x, xi, base + k * stride, k));
    return s;
}

// Butterfly over groups of `width` lanes (a power of two up to 32; groups aligned to multiples
// of width). Every lane of the warp must call it (full mask); every lane gets its group's result.
template <class R> __device__ __forceinline__ typename R::S group_join(typename R::S s, int width) {
    for (int m = width >> 1; m > 0; m >>= 1) s = R::join(s, shfl_xor(s, m));
    return s;
}

// Join over the whole block; the result is valid in warp 0. Every thread must call it.
template <class R> __device__ __forceinline__ typename R::S block_join(typename R::S s, typename R::S* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    s = group_join<R>(s, 32);
    __syncthreads();  // the previous call's warp 0 may still be reading scratch
    if (lane == 0) scratch[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < warps ? scratch[lane] : R::empty();
        s = group_join<R>(s, 32);
    }
    return s;
}

// Rows of n <= 32 * (a few) elements: `width` lanes per row, REDUCE_THREADS / width rows per block.
template <class R, typename In, typename Out>
__device__ void rows_small(const In* x, const i64* xi, Out* out, i64* oi, i64 rows, i64 n, int width) {
    typedef typename R::S S;
    const int per_block = blockDim.x / width;
    const int group = threadIdx.x / width, lane = threadIdx.x % width;
    // `first` is the same for the whole block, so every lane runs the same number of iterations.
    for (i64 first = (i64)blockIdx.x * per_block; first < rows; first += (i64)gridDim.x * per_block) {
        const i64 r = first + group;
        S s = R::empty();
        if (r < rows) s = fold_strided<R>(s, x, xi, r * n, 1, lane, n, width);
        s = group_join<R>(s, width);
        if (r < rows && lane == 0) R::store(out, oi, r, s);
    }
}

// Long rows: one block per (row, chunk); output b = row * chunks + chunk.
template <class R, typename In, typename Out>
__device__ void rows_block(const In* x, const i64* xi, Out* out, i64* oi, i64 rows, i64 n, i64 chunk,
                           i64 chunks) {
    typedef typename R::S S;
    __shared__ S scratch[32];
    const i64 blocks = rows * chunks;
    for (i64 b = blockIdx.x; b < blocks; b += gridDim.x) {
        const i64 r = b / chunks, c = b % chunks;
        const i64 start = c * chunk, end = imin(n, start + chunk);
        S s = fold_strided<R>(R::empty(), x, xi, r * n, 1, start + threadIdx.x, end, blockDim.x);
        s = block_join<R>(s, scratch);
        if (threadIdx.x == 0) R::store(out, oi, b, s);
    }
}

// A middle extent: (outer, n, inner) with inner > 1, W = min(inner, 32) columns per block.
// Output ((o * chunks + c) * inner + j).
template <class R, typename In, typename Out>
__device__ void mid(const In* x, const i64* xi, Out* out, i64* oi, i64 outer, i64 n, i64 inner, int W,
                    i64 chunk, i64 chunks) {
    typedef typename R::S S;
    __shared__ S acc[REDUCE_THREADS];
    const int t = threadIdx.x, G = blockDim.x / W, tx = t % W, ty = t / W;
    int top = 1;  // the power of two at or above G
    while (top < G) top <<= 1;
    const i64 tiles = (inner + W - 1) / W;
    const i64 blocks = outer * tiles * chunks;
    for (i64 b = blockIdx.x; b < blocks; b += gridDim.x) {
        const i64 c = b % chunks, rest = b / chunks;
        const i64 o = rest / tiles, j = (rest % tiles) * W + tx;
        const i64 start = c * chunk, end = imin(n, start + chunk);
        S s = R::empty();
        // Threads past G * W (when W does not divide the block) and columns past inner idle.
        if (ty < G && j < inner) s = fold_strided<R>(s, x, xi, o * n * inner + j, inner, start + ty, end, G);
        acc[t] = s;
        __syncthreads();
        // Row ty takes row ty + h; rows [0, h) stay live. Readers and writers never overlap.
        for (int h = top >> 1; h > 0; h >>= 1) {
            if (ty < h && ty + h < G) acc[t] = R::join(acc[t], acc[t + h * W]);
            __syncthreads();
        }
        if (ty == 0 && j < inner) R::store(out, oi, (o * chunks + c) * inner + j, acc[t]);
        __syncthreads();  // acc is rewritten by the next iteration
    }
}

// A middle extent with many outputs or a short n: one thread per output folds its whole column
// (consecutive threads take consecutive inner indices, so reads coalesce). Output o * inner + j.
template <class R, typename In, typename Out>
__device__ void cols(const In* x, const i64* xi, Out* out, i64* oi, i64 outer, i64 n, i64 inner) {
    RCMCL_FOR_EACH(q, outer * inner) {
        const i64 o = q / inner, j = q % inner;
        R::store(out, oi, q, fold_strided<R>(R::empty(), x, xi, o * n * inner + j, inner, 0, n, 1));
    }
}

// ----- kernels --------------------------------------------------------------------------------

// `width` > 0: rows_small (one chunk); 0: rows_block.
template <class R, typename In, typename Out>
__device__ __forceinline__ void rows_any(const In* x, const i64* xi, Out* out, i64* oi, i64 rows, i64 n,
                                         int width, i64 chunk, i64 chunks) {
    if (width > 0) rows_small<R>(x, xi, out, oi, rows, n, width);
    else rows_block<R>(x, xi, out, oi, rows, n, chunk, chunks);
}

// `w` > 0: mid with W = w; 0: cols (one chunk).
template <class R, typename In, typename Out>
__device__ __forceinline__ void mid_any(const In* x, const i64* xi, Out* out, i64* oi, i64 outer, i64 n,
                                        i64 inner, int w, i64 chunk, i64 chunks) {
    if (w > 0) mid<R>(x, xi, out, oi, outer, n, inner, w, chunk, chunks);
    else cols<R>(x, xi, out, oi, outer, n, inner);
}

template <typename In, typename Out>
__device__ __forceinline__ void reduce_rows_body(const In* x, Out* out, i64 rows, i64 n, int width, i64 chunk,
                                                 i64 chunks, int op) {
    if (op == R_SUM) rows_any<SumR<In> >(x, nullptr, out, nullptr, rows, n, width, chunk, chunks);
    else if (op == R_MAX) rows_any<ExtremeR<In, true> >(x, nullptr, out, nullptr, rows, n, width, chunk, chunks);
    else rows_any<ExtremeR<In, false> >(x, nullptr, out, nullptr, rows, n, width, chunk, chunks);
}

template <typename In, typename Out>
__device__ __forceinline__ void reduce_mid_body(const In* x, Out* out, i64 outer, i64 n, i64 inner, int w,
                                                i64 chunk, i64 chunks, int op) {
    if (op == R_SUM) mid_any<SumR<In> >(x, nullptr, out, nullptr, outer, n, inner, w, chunk, chunks);
    else if (op == R_MAX) mid_any<ExtremeR<In, true> >(x, nullptr, out, nullptr, outer, n, inner, w, chunk, chunks);
    else mid_any<ExtremeR<In, false> >(x, nullptr, out, nullptr, outer, n, inner, w, chunk, chunks);
}

// reduce_{rows,mid}_<in>_<out>: f32 data reduces f32 -> f32 in one pass, or f32 -> f64 partials,
// f64 -> f64, f64 -> f32 over several; f64 data is f64 throughout.
#define RCMCL_REDUCE_KERNELS(IN, OUT, TI, TO)                                                               \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)                                            \
        reduce_rows_##IN##_##OUT(const TI* x, TO* out, i64 rows, i64 n, int width, i64 chunk, i64 chunks,  \
                                 int op) {                                                                  \
        reduce_rows_body<TI, TO>(x, out, rows, n, width, chunk, chunks, op);                                \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)                                            \
        reduce_mid_##IN##_##OUT(const TI* x, TO* out, i64 outer, i64 n, i64 inner, int w, i64 chunk,       \
                                i64 chunks, int op) {                                                       \
        reduce_mid_body<TI, TO>(x, out, outer, n, inner, w, chunk, chunks, op);                             \
    }

RCMCL_REDUCE_KERNELS(f32, f32, float, float)
RCMCL_REDUCE_KERNELS(f32, f64, float, double)
RCMCL_REDUCE_KERNELS(f64, f32, double, float)
RCMCL_REDUCE_KERNELS(f64, f64, double, double)

// argmax_{rows,mid}_<t>: `xi` null on the first pass (positions come from the loop), else the
// positions of the previous pass's partial maxima; `out_v` null on the last pass.
#define RCMCL_ARGMAX_KERNELS(NAME, T)                                                                       \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)                                            \
        argmax_rows_##NAME(const T* x, const i64* xi, T* out_v, i64* out_i, i64 rows, i64 n, int width,    \
                           i64 chunk, i64 chunks) {                                                         \
        rows_any<ArgmaxR<T> >(x, xi, out_v, out_i, rows, n, width, chunk, chunks);                          \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)                                            \
        argmax_mid_##NAME(const T* x, const i64* xi, T* out_v, i64* out_i, i64 outer, i64 n, i64 inner,    \
                          int w, i64 chunk, i64 chunks) {                                                   \
        mid_any<ArgmaxR<T> >(x, xi, out_v, out_i, outer, n, inner, w, chunk, chunks);                         \
    }

RCMCL_ARGMAX_KERNELS(f32, float)
RCMCL_ARGMAX_KERNELS(f64, double)
