// Softmax, log-softmax, their backward, and the fused cross-entropy (ops/softmax/cuda.rs).
//
// Around the softmax axis a tensor is (outer, n, inner): each of the outer * inner lanes holds n
// elements `inner` apart. Two layouts, one skeleton each:
// - rows (inner == 1): `width` lanes of one warp per row (a power of two up to 32, used for
//   n <= 1024: shuffles only, several rows per warp when rows are short), or with width == 0 the
//   whole 256-thread block per row (warp shuffles, then the warps' states through shared memory).
// - cols (inner > 1 with many lanes, or a short n): one thread per lane.
// - mid (otherwise inner > 1): a block covers W = min(inner, 32) consecutive lanes of one outer index. Its
//   256 threads form G = 256 / W rows of W columns, so the threads of a warp read consecutive
//   addresses; each thread takes every G-th position of its column, and the G states of a column
//   are joined by a fixed tree in shared memory.
// Each kernel reads the lane once to build a state, joins the states of the threads sharing the
// lane in a fixed order (results are reproducible bit for bit), and then, for softmax and the
// backward, makes one pass writing the lane's outputs.
//
// The forward state is online: a running maximum m and s = sum exp(x - m), rescaled when m grows
// (s <- s * exp(m - x) + 1), and two states join as max plus rescaled sums. Sums are accumulated in
// f64. NaN rules, matching the CPU: a lane holding a NaN or +inf comes out all NaN, and so does a
// lane of only -inf; an -inf next to finite values gives probability 0 (log-probability -inf).
//
// Every kernel expects blockDim.x == SOFTMAX_THREADS.

#define SOFTMAX_THREADS 256

__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }

__device__ __forceinline__ float shfl_xor(float v, int m) { return __shfl_xor_sync(RCMCL_FULL_MASK, v, m); }
__device__ __forceinline__ double shfl_xor(double v, int m) { return __shfl_xor_sync(RCMCL_FULL_MASK, v, m); }

// ----- the online softmax state ---------------------------------------------------------------

template <typename T> struct Online {
    T m;       // running maximum (-inf when empty)
    double s;  // sum of exp(x - m)
};

template <typename T> __device__ __forceinline__ Online<T> online_empty() {
    Online<T> o;
    o.m = -rcmcl_infinity<T>();
    o.s = 0.0;
    return o;
}

template <typename T> __device__ __forceinline__ void online_add(Online<T>& o, T x) {
    if (x > o.m) {
        // A new maximum (never for NaN). When m is -inf, s is 0 and exp(-inf) is 0.
        o.s = o.s * (double)m_exp(o.m - x) + 1.0;
        o.m = x;
    } else if (x != x) {
        o.m = x;  // NaN sticks: nothing is greater than it, and x - NaN is NaN
        o.s = (double)x;
    } else if (x > -rcmcl_infinity<T>()) {
        o.s += (double)m_exp(x - o.m);
    }
    // x == -inf <= m adds exp(-inf) = 0 (nothing at all while m is still -inf, avoiding -inf - -inf).
}

template <typename T> __device__ __forceinline__ Online<T> online_join(Online<T> a, Online<T> b) {
    Online<T> r;
    r.m = rcmcl_max(a.m, b.m);
    if (r.m == -rcmcl_infinity<T>()) {
        r.s = 0.0;  // both empty (or only -inf so far)
    } else {
        r.s = a.s * (double)m_exp(a.m - r.m) + b.s * (double)m_exp(b.m - r.m);
    }
    return r;
}

// The lane's final sum, NaN when the maximum is NaN or +inf (the CPU's exp(inf - inf) = NaN).
template <typename T> __device__ __forceinline__ double online_sum(Online<T> o) {
    return o.m < rcmcl_infinity<T>() ? o.s : (double)rcmcl_nan<T>();
}

template <typename T> __device__ __forceinline__ Online<T> shfl_xor(Online<T> o, int m) {
    Online<T> r;
    r.m = shfl_xor(o.m, m);
    r.s = shfl_xor(o.s, m);
    return r;
}

// ----- policies: what a kernel folds per element, and what it writes --------------------------
//
// P::S is the per-thread state; P::F what a lane's final state turns into. `add(s, off, k)` folds
// the element at offset `off` (position k along the axis); `join` must be symmetric (every lane of
// a butterfly must agree); `finish` makes F; `write(f, off, k)` is the per-element output pass
// (empty for cross-entropy); `lane_out(f, lane, base)` writes per-lane outputs (the lane's first
// element is at `base`, its k-th at base + k * inner).

template <typename T> struct SoftmaxP {
    typedef Online<T> S;
    struct F {
        T m, inv, shift;
    };
    const T* x;
    T* y;
    int take_log;
    __device__ __forceinline__ S empty() const { return online_empty<T>(); }
    __device__ __forceinline__ void add(S& s, i64 off, i64) const { online_add(s, x[off]); }
    __device__ __forceinline__ S join(S a, S b) const { return online_join(a, b); }
    __device__ __forceinline__ F finish(S s) const {
        // As the CPU: 1 / sum and m + ln(sum) in f64, rounded to T.
        const double sum = online_sum(s);
        F f;
        f.m = s.m;
        f.inv = (T)(1.0 / sum);
        f.shift = s.m + (T)::log(sum);
        return f;
    }
    __device__ __forceinline__ void write(const F& f, i64 off, i64) const {
        const T v = x[off];
        y[off] = take_log ? v - f.shift : m_exp(v - f.m) * f.inv;
    }
    __device__ __forceinline__ void lane_out(const F&, i64, i64) const {}
};

// Backward of softmax, y * (g - sum(g * y)), or of log-softmax, g - exp(y) * sum(g).
template <typename T> struct SoftmaxGradP {
    typedef double S;
    typedef T F;
    const T* y;
    const T* g;
    T* gx;
    int take_log;
    __device__ __forceinline__ S empty() const { return 0.0; }
    __device__ __forceinline__ void add(S& s, i64 off, i64) const {
        s += take_log ? (double)g[off] : (double)(y[off] * g[off]);
    }
    __device__ __forceinline__ S join(S a, S b) const { return a + b; }
    __device__ __forceinline__ F finish(S s) const { return (T)s; }
    __device__ __forceinline__ void write(const F& sum, i64 off, i64) const {
        const T yv = y[off], gv = g[off];
        gx[off] = take_log ? gv - m_exp(yv) * sum : yv * (gv - sum);
    }
    __device__ __forceinline__ void lane_out(const F&, i64, i64) const {}
};

// Cross-entropy state: the online softmax state plus the sum of the logits (label smoothing).
template <typename T> struct CeState {
    Online<T> o;
    double total;
};

template <typename T> __device__ __forceinline__ CeState<T> shfl_xor(CeState<T> c, int m) {
    CeState<T> r;
    r.o = shfl_xor(c.o, m);
    r.total = shfl_xor(c.total, m);
    return r;
}

// Fused log-softmax and negative log-likelihood over the class axis, with label smoothing eps:
// loss = (1 - eps) * (lse - x_t) + eps * (lse - mean(x)), lse - x_t computed as (m - x_t) + ln s.
// Writes each lane's loss and its (m, ln s) for the backward. A target outside [0, n) (the CPU
// rejects it with an error before any kernel runs; the device cannot without a synchronising copy)
// makes that lane's loss NaN.
template <typename T> struct CrossEntropyP {
    typedef CeState<T> S;
    struct F {
        T m;
        double log_sum, total;
    };
    const T* x;
    const i64* targets;
    T* loss;
    T* stats;
    i64 n, inner;
    double eps;
    __device__ __forceinline__ S empty() const {
        S s;
        s.o = online_empty<T>();
        s.total = 0.0;
        return s;
    }
    __device__ __forceinline__ void add(S& s, i64 off, i64) const {
        const T v = x[off];
        online_add(s.o, v);
        s.total += (double)v;
    }
    __device__ __forceinline__ S join(S a, S b) const {
        S r;
        r.o = online_join(a.o, b.o);
        r.total = a.total + b.total;
        return r;
    }
    __device__ __forceinline__ F finish(S s) const {
        F f;
        f.m = s.o.m;
        f.log_sum = ::log(online_sum(s.o));
        f.total = s.total;
        return f;
    }
    __device__ __forceinline__ void write(const F&, i64, i64) const {}
    __device__ __forceinline__ void lane_out(const F& f, i64 lane, i64 base) const {
        const i64 t = targets[lane];
        double l;
        if (t < 0 || t >= n) {
            l = (double)rcmcl_nan<T>();
        } else {
            const double m = (double)f.m;
            const double nll = (m - (double)x[base + t * inner]) + f.log_sum;
            l = eps == 0.0 ? nll : (1.0 - eps) * nll + eps * ((m - f.total / (double)n) + f.log_sum);
        }
        loss[lane] = (T)l;
        stats[2 * lane] = f.m;
        stats[2 * lane + 1] = (T)f.log_sum;
    }
};

// ----- skeletons ------------------------------------------------------------------------------

// Folds positions first, first + step, ... (< end) of the lane starting at `base` into s, in order.
template <class P>
__device__ __forceinline__ void fold(const P& p, typename P::S& s, i64 base, i64 stride, i64 first, i64 end,
                                     i64 step) {
#pragma unroll 4
    for (i64 k = first; k < end; k += step) p.add(s, base + k * stride, k);
}

template <class P> __device__ __forceinline__ typename P::S group_join(const P& p, typename P::S s, int width) {
    for (int m = width >> 1; m > 0; m >>= 1) s = p.join(s, shfl_xor(s, m));
    return s;
}

// Rows (inner == 1) of length n. width > 0: `width` lanes per row; width == 0: a block per row.
template <class P> __device__ void rows_skeleton(const P& p, i64 rows, i64 n, int width) {
    typedef typename P::S S;
    typedef typename P::F F;
    if (width == 0) {
        __shared__ S scratch[32];
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
        for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
            S s = p.empty();
            fold(p, s, r * n, 1, threadIdx.x, n, blockDim.x);
            s = group_join(p, s, 32);
            __syncthreads();  // the previous row's readers of scratch[0] are done
            if (lane == 0) scratch[warp] = s;
            __syncthreads();
            if (warp == 0) {
                s = lane < warps ? scratch[lane] : p.empty();
                s = group_join(p, s, 32);
                if (lane == 0) scratch[0] = s;
            }
            __syncthreads();
            s = scratch[0];
            const F f = p.finish(s);
            for (i64 k = threadIdx.x; k < n; k += blockDim.x) p.write(f, r * n + k, k);
            if (threadIdx.x == 0) p.lane_out(f, r, r * n);
        }
    } else {
        const int per_block = blockDim.x / width;
        const int group = threadIdx.x / width, lane = threadIdx.x % width;
        // `first` is the same for the whole block, so every lane runs the same iterations.
        for (i64 first = (i64)blockIdx.x * per_block; first < rows; first += (i64)gridDim.x * per_block) {
            const i64 r = first + group;
            S s = p.empty();
            if (r < rows) fold(p, s, r * n, 1, lane, n, width);
            s = group_join(p, s, width);
            if (r < rows) {
                const F f = p.finish(s);
                for (i64 k = lane; k < n; k += width) p.write(f, r * n + k, k);
                if (lane == 0) p.lane_out(f, r, r * n);
            }
        }
    }
}

// A middle axis: (outer, n, inner) with inner > 1, W = min(inner, 32) lanes per block.
template <class P> __device__ void mid_skeleton(const P& p, i64 outer, i64 n, i64 inner, int W) {
    typedef typename P::S S;
    typedef typename P::F F;
    __shared__ S acc[SOFTMAX_THREADS];
    const int t = threadIdx.x, G = blockDim.x / W, tx = t % W, ty = t / W;
    int top = 1;  // the power of two at or above G
    while (top < G) top <<= 1;
    const i64 tiles = (inner + W - 1) / W;
    for (i64 b = blockIdx.x; b < outer * tiles; b += gridDim.x) {
        const i64 o = b / tiles, j = (b % tiles) * W + tx;
        // Threads past G * W (when W does not divide the block) and lanes past inner idle.
        const bool live = ty < G && j < inner;
        const i64 base = o * n * inner + j;
        S s = p.empty();
        if (live) fold(p, s, base, inner, ty, n, G);
        acc[t] = s;
        __syncthreads();
        // Row ty takes row ty + h; rows [0, h) stay live. Readers and writers never overlap.
        for (int h = top >> 1; h > 0; h >>= 1) {
            if (ty < h && ty + h < G) acc[t] = p.join(acc[t], acc[t + h * W]);
            __syncthreads();
        }
        s = acc[tx];  // row 0 holds each column's state
        __syncthreads();  // acc is rewritten by the next iteration
        if (live) {
            const F f = p.finish(s);
            for (i64 k = ty; k < n; k += G) p.write(f, base + k * inner, k);
            if (ty == 0) p.lane_out(f, o * inner + j, base);
        }
    }
}

// A middle axis with many lanes (or a short n): one thread per lane, consecutive threads on
// consecutive inner indices so reads coalesce.
template <class P> __device__ void cols_skeleton(const P& p, i64 outer, i64 n, i64 inner) {
    typedef typename P::S S;
    typedef typename P::F F;
    RCMCL_FOR_EACH(lane, outer * inner) {
        const i64 o = lane / inner, j = lane % inner;
        const i64 base = o * n * inner + j;
        S s = p.empty();
        fold(p, s, base, inner, 0, n, 1);
        const F f = p.finish(s);
        for (i64 k = 0; k < n; ++k) p.write(f, base + k * inner, k);
        p.lane_out(f, lane, base);
    }
}

// w > 0: mid_skeleton with W = w; w == 0: cols_skeleton.
template <class P> __device__ __forceinline__ void lanes_skeleton(const P& p, i64 outer, i64 n, i64 inner, int w) {
    if (w > 0) mid_skeleton(p, outer, n, inner, w);
    else cols_skeleton(p, outer, n, inner);
}

// ----- kernels --------------------------------------------------------------------------------

#define RCMCL_SOFTMAX_KERNELS(NAME, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS)                                           \
        softmax_rows_##NAME(const T* x, T* y, i64 rows, i64 n, int width, int take_log) {                        \
        SoftmaxP<T> p;                                                                                      \
        p.x = x;                                                                                            \
        p.y = y;                                                                                            \
        p.take_log = take_log;                                                                                        \
        rows_skeleton(p, rows, n, width);                                                                   \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS)                                           \
        softmax_mid_##NAME(const T* x, T* y, i64 outer, i64 n, i64 inner, int w, int take_log) {                 \
        SoftmaxP<T> p;                                                                                      \
        p.x = x;                                                                                            \
        p.y = y;                                                                                            \
        p.take_log = take_log;                                                                                        \
        lanes_skeleton(p, outer, n, inner, w);                                                              \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS)                                           \
        softmax_grad_rows_##NAME(const T* y, const T* g, T* gx, i64 rows, i64 n, int width, int take_log) {     \
        SoftmaxGradP<T> p;                                                                                  \
        p.y = y;                                                                                            \
        p.g = g;                                                                                            \
        p.gx = gx;                                                                                          \
        p.take_log = take_log;                                                                                        \
        rows_skeleton(p, rows, n, width);                                                                   \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS)                                           \
        softmax_grad_mid_##NAME(const T* y, const T* g, T* gx, i64 outer, i64 n, i64 inner, int w,         \
                                int take_log) {                                                                  \
        SoftmaxGradP<T> p;                                                                                  \
        p.y = y;                                                                                            \
        p.g = g;                                                                                            \
        p.gx = gx;                                                                                          \
        p.take_log = take_log;                                                                                        \
        lanes_skeleton(p, outer, n, inner, w);                                                              \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS)                                           \
        cross_entropy_rows_##NAME(const T* x, const i64* targets, T* loss, T* stats, i64 rows, i64 n,      \
                                  int width, double eps) {                                                  \
        CrossEntropyP<T> p;                                                                                 \
        p.x = x;                                                                                            \
        p.targets = targets;                                                                                \
        p.loss = loss;                                                                                      \
        p.stats = stats;                                                                                    \
        p.n = n;                                                                                            \
        p.inner = 1;                                                                                        \
        p.eps = eps;                                                                                        \
        rows_skeleton(p, rows, n, width);                                                                   \
    }                                                                                                       \
    extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS)                                           \
        cross_entropy_mid_##NAME(const T* x, const i64* targets, T* loss, T* stats, i64 outer, i64 n,      \
                                 i64 inner, int w, double eps) {                                            \
        CrossEntropyP<T> p;                                                                                 \
        p.x = x;                                                                                            \
        p.targets = targets;                                                                                \
        p.loss = loss;                                                                                      \
        p.stats = stats;                                                                                    \
        p.n = n;                                                                                            \
        p.inner = inner;                                                                                    \
        p.eps = eps;                                                                                        \
        lanes_skeleton(p, outer, n, inner, w);                                                              \
    }                                                                                                       \
    /* d loss / d x = (softmax(x) - q) * g[lane * g_stride] * scale, elementwise from the saved      */    \
    /* (m, ln s) of each lane; q = (1 - eps) * onehot(target) + eps / n. A target outside [0, n)     */    \
    /* makes its lane's gradient NaN (see CrossEntropyP).                                            */    \
    extern "C" __global__ void cross_entropy_grad_##NAME(const T* x, const i64* targets, const T* stats,   \
                                                         const T* g, i64 g_stride, double scale, T* gx,     \
                                                         i64 outer, i64 n, i64 inner, double eps) {         \
        const i64 total = outer * n * inner;                                                                \
        /* Rounded to T on the host side of the CPU reference too. */                                      \
        const T off = (T)(eps / (double)n);                                                                 \
        const T on = (T)(1.0 - eps) + off;                                                                  \
        RCMCL_FOR_EACH(i, total) {                                                                          \
            const i64 j = i % inner, rest = i / inner;                                                      \
            const i64 k = rest % n, o = rest / n;                                                           \
            const i64 lane = o * inner + j;                                                                 \
            const i64 t = targets[lane];                                                                    \
            const T w = g[lane * g_stride] * (T)scale;                                                      \
            const T q = t == k ? on : off;                                                                  \
            const T r = (m_exp(x[i] - stats[2 * lane] - stats[2 * lane + 1]) - q) * w;                      \
            gx[i] = (t < 0 || t >= n) ? rcmcl_nan<T>() : r;                                                 \
        }                                                                                                   \
    }

RCMCL_SOFTMAX_KERNELS(f32, float)
RCMCL_SOFTMAX_KERNELS(f64, double)
