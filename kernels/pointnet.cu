// Point-cloud ops of PointNet++: farthest point sampling, ball query, grouping (gather) and its
// scatter-add backward, neighbourhood max-pool and its backward. Kernel signatures must match
// `engine/src/ops/pointnet/cuda.rs`; the CPU reference is `engine/src/ops/pointnet/cpu.rs`.
//
// Squared distances are ((dx*dx) + (dy*dy)) + (dz*dz), each product and sum rounded once
// (__fmul_rn / __fadd_rn: no fused multiply-add), exactly as the CPU computes them, so the
// index outputs agree with the CPU bit for bit. Point counts and indices are 32-bit (the
// engine refuses larger sizes); offsets are 64-bit.

template <typename T> __device__ __forceinline__ T pn_mul(T a, T b);
template <> __device__ __forceinline__ float pn_mul<float>(float a, float b) { return __fmul_rn(a, b); }
template <> __device__ __forceinline__ double pn_mul<double>(double a, double b) { return __dmul_rn(a, b); }
template <typename T> __device__ __forceinline__ T pn_add(T a, T b);
template <> __device__ __forceinline__ float pn_add<float>(float a, float b) { return __fadd_rn(a, b); }
template <> __device__ __forceinline__ double pn_add<double>(double a, double b) { return __dadd_rn(a, b); }

template <typename T> __device__ __forceinline__ T pn_dist2(T x, T y, T z, T cx, T cy, T cz) {
    const T dx = x - cx, dy = y - cy, dz = z - cz;
    return pn_add(pn_add(pn_mul(dx, dx), pn_mul(dy, dy)), pn_mul(dz, dz));
}

// ----- farthest point sampling ------------------------------------------------------------
//
// One block per cloud (blockDim.x a multiple of 32, at most FPS_THREADS). Thread t owns the
// points t, t + blockDim.x, ... and keeps their running minimum squared distance (in registers
// for the `_pK` kernels, K points per thread, coordinates also in registers when K <= 8; in a
// global scratch buffer of B * N values for `_global`). Each step: every thread updates its
// distances against the last pick and keeps its best (value, index) (strict > in index order),
// then a warp-shuffle and shared-memory argmax over the block, ties to the lower index. The
// first index is 0, or floor(u * N) (clamped) with u = rcmcl_uniform(seed, cloud) when
// `has_seed`: the CPU's `fps_start`.

#define FPS_THREADS 512

// The better of two (value, index) candidates: larger value, then lower index.
template <typename T> __device__ __forceinline__ void fps_take(T v, int i, T& bv, int& bi) {
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

// The block's argmax of (bv, bi); every thread calls it; every thread gets the index.
template <typename T> __device__ __forceinline__ int fps_block_argmax(T bv, int bi, T* s_val, int* s_idx, int* s_cur) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const T ov = __shfl_xor_sync(RCMCL_FULL_MASK, bv, off);
        const int oi = __shfl_xor_sync(RCMCL_FULL_MASK, bi, off);
        fps_take(ov, oi, bv, bi);
    }
    if (lane == 0) {
        s_val[warp] = bv;
        s_idx[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
        bv = lane < warps ? s_val[lane] : T(-1);
        bi = lane < warps ? s_idx[lane] : 0x7fffffff;
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) {
            const T ov = __shfl_xor_sync(RCMCL_FULL_MASK, bv, off);
            const int oi = __shfl_xor_sync(RCMCL_FULL_MASK, bi, off);
            fps_take(ov, oi, bv, bi);
        }
        if (lane == 0) *s_cur = bi;
    }
    __syncthreads();
    // A later call writes s_val/s_cur only after its first __syncthreads, which every thread
    // reaches after reading *s_cur here.
    return *s_cur;
}

__device__ __forceinline__ int fps_first(int has_seed, u64 seed, int n) {
    if (!has_seed) return 0;
    const int s = (int)(rcmcl_uniform(seed, (u64)blockIdx.x) * (double)n);
    return s < n ? s : n - 1;
}

template <typename T, int PER>
__device__ void fps_regs(const T* __restrict__ pts, i64* __restrict__ out, int n, int m, int has_seed, u64 seed) {
    constexpr bool CACHE = PER <= 8;
    __shared__ T s_val[32];
    __shared__ int s_idx[32];
    __shared__ int s_cur;
    const T* p = pts + (i64)blockIdx.x * n * 3;
    i64* o = out + (i64)blockIdx.x * m;
    const int tid = threadIdx.x, nt = blockDim.x;
    T dist[PER], px[PER], py[PER], pz[PER];
#pragma unroll
    for (int k = 0; k < PER; ++k) {
        const int i = tid + k * nt;
        dist[k] = rcmcl_infinity<T>();
        if (CACHE && i < n) {
            px[k] = p[3 * i];
            py[k] = p[3 * i + 1];
            pz[k] = p[3 * i + 2];
        }
    }
    int cur = fps_first(has_seed, seed, n);
    if (tid == 0) o[0] = cur;
    for (int j = 1; j < m; ++j) {
        const T cx = p[3 * cur], cy = p[3 * cur + 1], cz = p[3 * cur + 2];
        T bv = T(-1);
        int bi = 0x7fffffff;
#pragma unroll
        for (int k = 0; k < PER; ++k) {
            const int i = tid + k * nt;
            if (i < n) {
                T d;
                if (CACHE) d = pn_dist2(px[k], py[k], pz[k], cx, cy, cz);
                else d = pn_dist2(__ldg(p + 3 * i), __ldg(p + 3 * i + 1), __ldg(p + 3 * i + 2), cx, cy, cz);
                if (d < dist[k]) dist[k] = d;
                if (dist[k] > bv) {
                    bv = dist[k];
                    bi = i;
                }
            }
        }
        cur = fps_block_argmax(bv, bi, s_val, s_idx, &s_cur);
        if (tid == 0) o[j] = cur;
    }
}

template <typename T>
__device__ void fps_global(const T* __restrict__ pts, i64* __restrict__ out, T* __restrict__ scratch, int n, int m,
                           int has_seed, u64 seed) {
    __shared__ T s_val[32];
    __shared__ int s_idx[32];
    __shared__ int s_cur;
    const T* p = pts + (i64)blockIdx.x * n * 3;
    T* dist = scratch + (i64)blockIdx.x * n;
    i64* o = out + (i64)blockIdx.x * m;
    const int tid = threadIdx.x, nt = blockDim.x;
    // Each thread only ever touches its own entries: no barrier needed after this.
    for (int i = tid; i < n; i += nt) dist[i] = rcmcl_infinity<T>();
    int cur = fps_first(has_seed, seed, n);
    if (tid == 0) o[0] = cur;
    for (int j = 1; j < m; ++j) {
        const T cx = p[3 * cur], cy = p[3 * cur + 1], cz = p[3 * cur + 2];
        T bv = T(-1);
        int bi = 0x7fffffff;
        for (int i = tid; i < n; i += nt) {
            const T d = pn_dist2(__ldg(p + 3 * i), __ldg(p + 3 * i + 1), __ldg(p + 3 * i + 2), cx, cy, cz);
            T di = dist[i];
            if (d < di) {
                di = d;
                dist[i] = d;
            }
            if (di > bv) {
                bv = di;
                bi = i;
            }
        }
        cur = fps_block_argmax(bv, bi, s_val, s_idx, &s_cur);
        if (tid == 0) o[j] = cur;
    }
}

#define RCMCL_FPS_REGS(T, SUF, PER)                                                                         \
    extern "C" __global__ void __launch_bounds__(FPS_THREADS)                                               \
        fps_##SUF##_p##PER(const T* pts, i64* out, int n, int m, int has_seed, u64 seed) {                  \
        fps_regs<T, PER>(pts, out, n, m, has_seed, seed);                                                   \
    }

#define RCMCL_FPS(T, SUF)                                                                                   \
    RCMCL_FPS_REGS(T, SUF, 1)                                                                               \
    RCMCL_FPS_REGS(T, SUF, 2)                                                                               \
    RCMCL_FPS_REGS(T, SUF, 4)                                                                               \
    RCMCL_FPS_REGS(T, SUF, 8)                                                                               \
    RCMCL_FPS_REGS(T, SUF, 16)                                                                              \
    RCMCL_FPS_REGS(T, SUF, 32)                                                                              \
    extern "C" __global__ void __launch_bounds__(FPS_THREADS)                                               \
        fps_##SUF##_global(const T* pts, i64* out, T* scratch, int n, int m, int has_seed, u64 seed) {      \
        fps_global<T>(pts, out, scratch, n, m, has_seed, seed);                                             \
    }

RCMCL_FPS(float, f32)
RCMCL_FPS(double, f64)

// ----- ball query -------------------------------------------------------------------------
//
// One thread per centre (grid-stride over B * M): scan the cloud's points in index order,
// writing hits (d2 < r2) to the centre's slots; the first hit fills every slot, so unfilled
// slots repeat it; stop at nsample hits. With no hit, every slot gets the nearest point
// (strict < in index order: the lowest index on ties).
template <typename T>
__device__ void ball_query_loop(const T* __restrict__ pts, const T* __restrict__ ctr, i64* __restrict__ out,
                                i64 total, int n, int m, T r2, int ns) {
    RCMCL_FOR_EACH(t, total) {
        const T* p = pts + (t / m) * (i64)n * 3;
        const T cx = ctr[3 * t], cy = ctr[3 * t + 1], cz = ctr[3 * t + 2];
        i64* o = out + t * ns;
        int count = 0, nearest = 0;
        T best = rcmcl_infinity<T>();
        for (int i = 0; i < n; ++i) {
            const T d = pn_dist2(p[3 * i], p[3 * i + 1], p[3 * i + 2], cx, cy, cz);
            if (d < r2) {
                if (count == 0) {
                    for (int s = 0; s < ns; ++s) o[s] = i;
                } else {
                    o[count] = i;
                }
                if (++count == ns) break;
            } else if (count == 0 && d < best) {
                best = d;
                nearest = i;
            }
        }
        if (count == 0)
            for (int s = 0; s < ns; ++s) o[s] = nearest;
    }
}

extern "C" __global__ void ball_query_f32(const float* pts, const float* ctr, i64* out, i64 total, int n, int m,
                                          float r2, int ns) {
    ball_query_loop<float>(pts, ctr, out, total, n, m, r2, ns);
}
extern "C" __global__ void ball_query_f64(const double* pts, const double* ctr, i64* out, i64 total, int n, int m,
                                          double r2, int ns) {
    ball_query_loop<double>(pts, ctr, out, total, n, m, r2, ns);
}

// ----- grouping -----------------------------------------------------------------------------
//
// features (B, C, N), indices (B, M, S) -> out (B, C, M, S); one thread per output element.
// An index outside 0..N reads 0 (forward) and is skipped (backward): not checked on the device.
template <typename T>
__device__ void group_loop(const T* __restrict__ feat, const i64* __restrict__ idx, T* __restrict__ out, i64 total,
                           i64 c, i64 n, i64 ms) {
    RCMCL_FOR_EACH(i, total) {
        const i64 r = i / ms;  // b * C + c
        const i64 k = i - r * ms;
        const i64 v = idx[(r / c) * ms + k];
        out[i] = (v >= 0 && v < n) ? feat[r * n + v] : T(0);
    }
}

// The backward: grad (B, C, N), zeroed by the engine, += gout at the indexed positions. atomicAdd:
// repeated indices accumulate in an order that may differ between runs.
template <typename T>
__device__ void group_grad_loop(const T* __restrict__ gout, const i64* __restrict__ idx, T* grad, i64 total, i64 c,
                                i64 n, i64 ms) {
    RCMCL_FOR_EACH(i, total) {
        const i64 r = i / ms;
        const i64 k = i - r * ms;
        const i64 v = idx[(r / c) * ms + k];
        if (v >= 0 && v < n) atomicAdd(grad + r * n + v, gout[i]);
    }
}

#define RCMCL_GROUP(T, SUF)                                                                                 \
    extern "C" __global__ void group_##SUF(const T* feat, const i64* idx, T* out, i64 total, i64 c, i64 n,   \
                                           i64 ms) {                                                        \
        group_loop<T>(feat, idx, out, total, c, n, ms);                                                     \
    }                                                                                                       \
    extern "C" __global__ void group_grad_##SUF(const T* gout, const i64* idx, T* grad, i64 total, i64 c,    \
                                                i64 n, i64 ms) {                                            \
        group_grad_loop<T>(gout, idx, grad, total, c, n, ms);                                               \
    }

RCMCL_GROUP(float, f32)
RCMCL_GROUP(double, f64)

// ----- neighbourhood max-pool ---------------------------------------------------------------
//
// x (rows, S) -> max and argmax per row (one thread per row): ties to the lowest position, the
// first NaN wins. The backward writes every element of the (rows, S) gradient (one thread per
// element): g at the argmax, 0 elsewhere. Deterministic.
template <typename T>
__device__ void max_pool_loop(const T* __restrict__ x, T* __restrict__ out, i64* __restrict__ arg, i64 rows, int s) {
    RCMCL_FOR_EACH(r, rows) {
        const T* v = x + r * s;
        T best = v[0];
        int bi = 0;
        for (int k = 1; k < s; ++k) {
            const T e = v[k];
            if (e > best || (e != e && best == best)) {
                best = e;
                bi = k;
            }
        }
        out[r] = best;
        arg[r] = bi;
    }
}

template <typename T>
__device__ void max_pool_grad_loop(const T* __restrict__ g, const i64* __restrict__ arg, T* __restrict__ gx,
                                   i64 total, i64 s) {
    RCMCL_FOR_EACH(i, total) {
        const i64 r = i / s;
        gx[i] = (i - r * s == arg[r]) ? g[r] : T(0);
    }
}

#define RCMCL_MAX_POOL(T, SUF)                                                                              \
    extern "C" __global__ void max_pool_##SUF(const T* x, T* out, i64* arg, i64 rows, int s) {               \
        max_pool_loop<T>(x, out, arg, rows, s);                                                             \
    }                                                                                                       \
    extern "C" __global__ void max_pool_grad_##SUF(const T* g, const i64* arg, T* gx, i64 total, i64 s) {    \
        max_pool_grad_loop<T>(g, arg, gx, total, s);                                                        \
    }

RCMCL_MAX_POOL(float, f32)
RCMCL_MAX_POOL(double, f64)
