// Batch and layer normalisation, forward and backward.
//
// Every sum is accumulated in double and reduced in a fixed order (no atomics), so results are
// the same from run to run. Elementwise arithmetic in the element type uses the `_rn` intrinsics
// (`rn_mul`, `rn_add`, ... below): the compiler never fuses them into an FMA, so each step rounds
// exactly as the CPU reference's separate multiply and add.
//
// Batch norm sees its input as (N, C, S), S the product of the spatial dims: channel c's elements
// are x[(n * C + c) * S + s]. Its statistics come from per-channel partial sums: block (c, p)
// (blockIdx.x = c, blockIdx.y = p) sums the p-th of P contiguous slices of the channel's N * S
// elements and writes partial[c * P + p]; a final kernel (one thread per channel) adds the P
// partials in order. The variance is two-pass, as on the CPU: the mean first, then the sum of
// squared deviations from it.
//
// Layer norm sees (R, D): rows of D <= 1024 elements get one warp each (8 rows per block of 256),
// longer rows one block each. The weight and bias gradients are column sums over rows: block
// (column tile, row chunk) writes a partial per column, and a final kernel adds the chunks' partials
// in order.
//
// Kernel names and argument orders must match `engine/src/ops/norm/cuda.rs`.

// ----- arithmetic that rounds like the CPU (no FMA contraction) -------------------------------

__device__ __forceinline__ float rn_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double rn_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float rn_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double rn_sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float rn_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double rn_mul(double a, double b) { return __dmul_rn(a, b); }

// 1 / sqrt(var + eps) in double, correctly rounded at each step (as Rust's `1.0 / (v + eps).sqrt()`).
__device__ __forceinline__ double inv_sqrt_eps(double var, double eps) {
    return __ddiv_rn(1.0, __dsqrt_rn(__dadd_rn(var, eps)));
}

// ----- batch norm: per-channel partial sums ---------------------------------------------------

// Walks the elements [k0, k1) of one channel (k = n * S + s) with a stride of blockDim.x, keeping
// (n, s) up to date without a division per element. `f(offset)` gets each element's offset.
template <typename F>
__device__ __forceinline__ void walk_channel(i64 c, i64 C, i64 S, i64 k0, i64 k1, F f) {
    i64 k = k0 + threadIdx.x;
    if (k >= k1) return;  // also covers S == 0 (an empty channel)
    const i64 step = blockDim.x;
    const i64 dn = step / S, ds = step - dn * S;
    i64 n = k / S, s = k - n * S;
    for (; k < k1; k += step) {
        f((n * C + c) * S + s);
        s += ds;
        n += dn;
        if (s >= S) {
            s -= S;
            n += 1;
        }
    }
}

// The slice [k0, k1) of a channel's `count` elements that partial block p of P covers.
__device__ __forceinline__ void slice_of(i64 count, i64 P, i64 p, i64* k0, i64* k1) {
    const i64 chunk = (count + P - 1) / P;
    *k0 = min(count, p * chunk);
    *k1 = min(count, *k0 + chunk);
}

// partial[c * P + p] = sum of x over the slice (mean64 null), or of (x - mean64[c])^2.
template <typename T>
__device__ void bn_sum_body(const T* __restrict__ x, const double* __restrict__ mean64, i64 N, i64 C, i64 S,
                            i64 P, double* __restrict__ partial) {
    __shared__ double scratch[32];
    const i64 c = blockIdx.x, p = blockIdx.y;
    i64 k0, k1;
    slice_of(N * S, P, p, &k0, &k1);
    double acc = 0.0;
    if (mean64 == nullptr) {
        walk_channel(c, C, S, k0, k1, [&](i64 i) { acc += (double)x[i]; });
    } else {
        const double m = mean64[c];
        walk_channel(c, C, S, k0, k1, [&](i64 i) {
            const double d = (double)x[i] - m;
            acc += d * d;
        });
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[c * P + p] = acc;
}

extern "C" __global__ void bn_sum_f32(const float* x, const double* mean64, i64 N, i64 C, i64 S, i64 P,
                                      double* partial) {
    bn_sum_body(x, mean64, N, C, S, P, partial);
}
extern "C" __global__ void bn_sum_f64(const double* x, const double* mean64, i64 N, i64 C, i64 S, i64 P,
                                      double* partial) {
    bn_sum_body(x, mean64, N, C, S, P, partial);
}

// The backward's sums over the slice: sum(g) into pa, sum(g * xhat) into pb, where
// xhat = (x - mean[c]) * invstd[c] in double (the CPU's `g * (x - m) * k`).
template <typename T>
__device__ void bn_grad_sum_body(const T* __restrict__ x, const T* __restrict__ g, const T* __restrict__ mean,
                                 const T* __restrict__ invstd, i64 N, i64 C, i64 S, i64 P, double* __restrict__ pa,
                                 double* __restrict__ pb) {
    __shared__ double scratch[32];
    const i64 c = blockIdx.x, p = blockIdx.y;
    i64 k0, k1;
    slice_of(N * S, P, p, &k0, &k1);
    const double m = (double)mean[c], k = (double)invstd[c];
    double sg = 0.0, sgx = 0.0;
    walk_channel(c, C, S, k0, k1, [&](i64 i) {
        const double gi = (double)g[i];
        sg += gi;
        sgx += gi * ((double)x[i] - m) * k;
    });
    sg = block_sum(sg, scratch);
    sgx = block_sum(sgx, scratch);
    if (threadIdx.x == 0) {
        pa[c * P + p] = sg;
        pb[c * P + p] = sgx;
    }
}

extern "C" __global__ void bn_grad_sum_f32(const float* x, const float* g, const float* mean, const float* invstd,
                                           i64 N, i64 C, i64 S, i64 P, double* pa, double* pb) {
    bn_grad_sum_body(x, g, mean, invstd, N, C, S, P, pa, pb);
}
extern "C" __global__ void bn_grad_sum_f64(const double* x, const double* g, const double* mean,
                                           const double* invstd, i64 N, i64 C, i64 S, i64 P, double* pa,
                                           double* pb) {
    bn_grad_sum_body(x, g, mean, invstd, N, C, S, P, pa, pb);
}

// The P partials of channel c, added in order.
__device__ __forceinline__ double partials_total(const double* partial, i64 c, i64 P) {
    double t = 0.0;
    for (i64 p = 0; p < P; ++p) t += partial[c * P + p];
    return t;
}

// ----- batch norm: per-channel finals (one thread per channel) --------------------------------

// mean64[c] = (sum of the partials) / count.
extern "C" __global__ void bn_mean_final(const double* partial, i64 C, i64 P, i64 count, double* mean64) {
    RCMCL_FOR_EACH(c, C) { mean64[c] = __ddiv_rn(partials_total(partial, c, P), (double)count); }
}

// From the squared-deviation partials: the biased variance var = sum / count; writes the mean
// and 1 / sqrt(var + eps) in T and, when `unbiased64` is not null, var * count / (count - 1).
template <typename T>
__device__ void bn_stats_final_body(const double* __restrict__ partial, const double* __restrict__ mean64, i64 C,
                                    i64 P, i64 count, double eps, T* __restrict__ mean_out,
                                    T* __restrict__ invstd_out, double* __restrict__ unbiased64) {
    RCMCL_FOR_EACH(c, C) {
        const double var = __ddiv_rn(partials_total(partial, c, P), (double)count);
        mean_out[c] = (T)mean64[c];
        invstd_out[c] = (T)inv_sqrt_eps(var, eps);
        if (unbiased64 != nullptr) unbiased64[c] = __ddiv_rn(__dmul_rn(var, (double)count), (double)(count - 1));
    }
}

extern "C" __global__ void bn_stats_final_f32(const double* partial, const double* mean64, i64 C, i64 P, i64 count,
                                              double eps, float* mean_out, float* invstd_out, double* unbiased64) {
    bn_stats_final_body(partial, mean64, C, P, count, eps, mean_out, invstd_out, unbiased64);
}
extern "C" __global__ void bn_stats_final_f64(const double* partial, const double* mean64, i64 C, i64 P, i64 count,
                                              double eps, double* mean_out, double* invstd_out, double* unbiased64) {
    bn_stats_final_body(partial, mean64, C, P, count, eps, mean_out, invstd_out, unbiased64);
}

// running[c] = (1 - momentum) * running[c] + momentum * batch64[c], in double, rounded to T
// (the CPU's `blend_into`); `keep` = 1 - momentum, computed by the engine in double.
template <typename T>
__device__ void bn_blend_body(T* __restrict__ running, const double* __restrict__ batch64, i64 C, double keep,
                              double momentum) {
    RCMCL_FOR_EACH(c, C) {
        running[c] = (T)__dadd_rn(__dmul_rn(keep, (double)running[c]), __dmul_rn(momentum, batch64[c]));
    }
}

extern "C" __global__ void bn_blend_f32(float* running, const double* batch64, i64 C, double keep, double momentum) {
    bn_blend_body(running, batch64, C, keep, momentum);
}
extern "C" __global__ void bn_blend_f64(double* running, const double* batch64, i64 C, double keep,
                                        double momentum) {
    bn_blend_body(running, batch64, C, keep, momentum);
}

// Evaluation: the mean is a copy of the running mean (kept apart, so a later update of the running
// stats does not change what the backward reads); invstd = 1 / sqrt(running_var + eps) in double.
template <typename T>
__device__ void bn_eval_stats_body(const T* __restrict__ running_mean, const T* __restrict__ running_var, i64 C,
                                   double eps, T* __restrict__ mean_out, T* __restrict__ invstd_out) {
    RCMCL_FOR_EACH(c, C) {
        mean_out[c] = running_mean[c];
        invstd_out[c] = (T)inv_sqrt_eps((double)running_var[c], eps);
    }
}

extern "C" __global__ void bn_eval_stats_f32(const float* running_mean, const float* running_var, i64 C, double eps,
                                             float* mean_out, float* invstd_out) {
    bn_eval_stats_body(running_mean, running_var, C, eps, mean_out, invstd_out);
}
extern "C" __global__ void bn_eval_stats_f64(const double* running_mean, const double* running_var, i64 C,
                                             double eps, double* mean_out, double* invstd_out) {
    bn_eval_stats_body(running_mean, running_var, C, eps, mean_out, invstd_out);
}

// The backward's per-channel totals: dbias = sum(g), dweight = sum(g * xhat) (either output may
// be null), and, in training, mean_g = sum(g) / count and mean_gx = sum(g * xhat) / count in T
// (both 0 in evaluation, where the statistics are constants).
template <typename T>
__device__ void bn_grad_final_body(const double* __restrict__ pa, const double* __restrict__ pb, i64 C, i64 P,
                                   i64 count, int training, T* __restrict__ dweight, T* __restrict__ dbias,
                                   T* __restrict__ mean_g, T* __restrict__ mean_gx) {
    RCMCL_FOR_EACH(c, C) {
        const double sg = partials_total(pa, c, P), sgx = partials_total(pb, c, P);
        if (dbias != nullptr) dbias[c] = (T)sg;
        if (dweight != nullptr) dweight[c] = (T)sgx;
        mean_g[c] = training ? (T)__ddiv_rn(sg, (double)count) : T(0);
        mean_gx[c] = training ? (T)__ddiv_rn(sgx, (double)count) : T(0);
    }
}

extern "C" __global__ void bn_grad_final_f32(const double* pa, const double* pb, i64 C, i64 P, i64 count,
                                             int training, float* dweight, float* dbias, float* mean_g,
                                             float* mean_gx) {
    bn_grad_final_body(pa, pb, C, P, count, training, dweight, dbias, mean_g, mean_gx);
}
extern "C" __global__ void bn_grad_final_f64(const double* pa, const double* pb, i64 C, i64 P, i64 count,
                                             int training, double* dweight, double* dbias, double* mean_g,
                                             double* mean_gx) {
    bn_grad_final_body(pa, pb, C, P, count, training, dweight, dbias, mean_g, mean_gx);
}

// ----- batch norm: elementwise passes ---------------------------------------------------------

// The channel of flat element i of an (N, C, S) tensor; 32-bit division when the tensor is small
// enough (it almost always is), which is several times cheaper than 64-bit.
__device__ __forceinline__ i64 channel_at(i64 i, i64 C, i64 S, bool small) {
    if (small) return (i64)(((unsigned)i / (unsigned)S) % (unsigned)C);
    return (i / S) % C;
}

// y = (x - mean[c]) * (invstd[c] * weight[c]) + bias[c]; weight 1 and bias 0 when null.
template <typename T>
__device__ void bn_forward_body(const T* __restrict__ x, T* __restrict__ y, const T* __restrict__ mean,
                                const T* __restrict__ invstd, const T* __restrict__ weight,
                                const T* __restrict__ bias, i64 total, i64 C, i64 S) {
    const bool small = total <= 0xffffffffll;
    RCMCL_FOR_EACH(i, total) {
        const i64 c = channel_at(i, C, S, small);
        const T scale = rn_mul(invstd[c], weight != nullptr ? weight[c] : T(1));
        const T shift = bias != nullptr ? bias[c] : T(0);
        y[i] = rn_add(rn_mul(rn_sub(x[i], mean[c]), scale), shift);
    }
}

extern "C" __global__ void bn_forward_f32(const float* x, float* y, const float* mean, const float* invstd,
                                          const float* weight, const float* bias, i64 total, i64 C, i64 S) {
    bn_forward_body(x, y, mean, invstd, weight, bias, total, C, S);
}
extern "C" __global__ void bn_forward_f64(const double* x, double* y, const double* mean, const double* invstd,
                                          const double* weight, const double* bias, i64 total, i64 C, i64 S) {
    bn_forward_body(x, y, mean, invstd, weight, bias, total, C, S);
}

// dx = (invstd[c] * weight[c]) * ((g - mean_g[c]) - xhat * mean_gx[c]), xhat = (x - mean[c]) * invstd[c];
// mean_g / mean_gx null means 0 (evaluation without a reduction).
template <typename T>
__device__ void bn_backward_body(const T* __restrict__ x, const T* __restrict__ g, const T* __restrict__ mean,
                                 const T* __restrict__ invstd, const T* __restrict__ weight,
                                 const T* __restrict__ mean_g, const T* __restrict__ mean_gx, i64 total, i64 C,
                                 i64 S, T* __restrict__ dx) {
    const bool small = total <= 0xffffffffll;
    RCMCL_FOR_EACH(i, total) {
        const i64 c = channel_at(i, C, S, small);
        const T k = rn_mul(invstd[c], weight != nullptr ? weight[c] : T(1));
        const T mg = mean_g != nullptr ? mean_g[c] : T(0);
        const T mgx = mean_gx != nullptr ? mean_gx[c] : T(0);
        const T xhat = rn_mul(rn_sub(x[i], mean[c]), invstd[c]);
        dx[i] = rn_mul(k, rn_sub(rn_sub(g[i], mg), rn_mul(xhat, mgx)));
    }
}

extern "C" __global__ void bn_backward_f32(const float* x, const float* g, const float* mean, const float* invstd,
                                           const float* weight, const float* mean_g, const float* mean_gx, i64 total,
                                           i64 C, i64 S, float* dx) {
    bn_backward_body(x, g, mean, invstd, weight, mean_g, mean_gx, total, C, S, dx);
}
extern "C" __global__ void bn_backward_f64(const double* x, const double* g, const double* mean,
                                           const double* invstd, const double* weight, const double* mean_g,
                                           const double* mean_gx, i64 total, i64 C, i64 S, double* dx) {
    bn_backward_body(x, g, mean, invstd, weight, mean_g, mean_gx, total, C, S, dx);
}

// ----- layer norm: rows -----------------------------------------------------------------------

// A group of threads that owns one row: a warp (BLOCK = false) or the whole block (BLOCK = true).
// `size` threads, this thread's `rank` in it; `sum` adds over the group (every member calls it).
template <bool BLOCK> struct RowGroup;

template <> struct RowGroup<false> {
    __device__ static int size() { return 32; }
    __device__ static int rank() { return threadIdx.x & 31; }
    __device__ static double sum(double v, double*) { return warp_sum(v); }
    // Rows handled by this block at once, and this thread's row among them.
    __device__ static i64 rows_per_block() { return blockDim.x >> 5; }
    __device__ static i64 row_in_block() { return threadIdx.x >> 5; }
};

template <> struct RowGroup<true> {
    __device__ static int size() { return blockDim.x; }
    __device__ static int rank() { return threadIdx.x; }
    __device__ static double sum(double v, double* scratch) { return block_sum(v, scratch); }
    __device__ static i64 rows_per_block() { return 1; }
    __device__ static i64 row_in_block() { return 0; }
};

// Per row: mean and biased variance (two-pass, double); mean_out[r] = mean and
// invstd_out[r] = 1 / sqrt(var + eps) in T; y = ((x - mean) * invstd) * weight[j] + bias[j] in T
// (weight 1 and bias 0 when null, as the CPU's defaults).
template <typename T, bool BLOCK>
__device__ void ln_forward_body(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ mean_out,
                                T* __restrict__ invstd_out, const T* __restrict__ weight, const T* __restrict__ bias,
                                i64 R, i64 D, double eps) {
    using G = RowGroup<BLOCK>;
    __shared__ double scratch[32];
    const i64 stride = (i64)gridDim.x * G::rows_per_block();
    // The loop bound depends only on the row, which the whole group shares: the group's
    // reductions are reached by all its threads together.
    for (i64 r = (i64)blockIdx.x * G::rows_per_block() + G::row_in_block(); r < R; r += stride) {
        const T* xr = x + r * D;
        double s = 0.0;
        for (i64 j = G::rank(); j < D; j += G::size()) s += (double)xr[j];
        const double mean = G::sum(s, scratch) / (double)D;
        double q = 0.0;
        for (i64 j = G::rank(); j < D; j += G::size()) {
            const double d = (double)xr[j] - mean;
            q += d * d;
        }
        const double var = G::sum(q, scratch) / (double)D;
        const T m = (T)mean, k = (T)inv_sqrt_eps(var, eps);
        if (G::rank() == 0) {
            mean_out[r] = m;
            invstd_out[r] = k;
        }
        T* yr = y + r * D;
        for (i64 j = G::rank(); j < D; j += G::size()) {
            const T xhat = rn_mul(rn_sub(xr[j], m), k);
            yr[j] = rn_add(rn_mul(xhat, weight != nullptr ? weight[j] : T(1)), bias != nullptr ? bias[j] : T(0));
        }
    }
}

extern "C" __global__ void ln_forward_warp_f32(const float* x, float* y, float* mean_out, float* invstd_out,
                                               const float* weight, const float* bias, i64 R, i64 D, double eps) {
    ln_forward_body<float, false>(x, y, mean_out, invstd_out, weight, bias, R, D, eps);
}
extern "C" __global__ void ln_forward_warp_f64(const double* x, double* y, double* mean_out, double* invstd_out,
                                               const double* weight, const double* bias, i64 R, i64 D, double eps) {
    ln_forward_body<double, false>(x, y, mean_out, invstd_out, weight, bias, R, D, eps);
}
extern "C" __global__ void ln_forward_block_f32(const float* x, float* y, float* mean_out, float* invstd_out,
                                                const float* weight, const float* bias, i64 R, i64 D, double eps) {
    ln_forward_body<float, true>(x, y, mean_out, invstd_out, weight, bias, R, D, eps);
}
extern "C" __global__ void ln_forward_block_f64(const double* x, double* y, double* mean_out, double* invstd_out,
                                                const double* weight, const double* bias, i64 R, i64 D, double eps) {
    ln_forward_body<double, true>(x, y, mean_out, invstd_out, weight, bias, R, D, eps);
}

// Per row, with dxhat_j = g_j * weight_j (T) and xhat_j = (x_j - mean) * invstd (T):
// sum = sum(dxhat), sum_x = sum(dxhat * xhat) in double; mean_d = sum / D and
// mean_dx = sum_x / D in T; dx_j = invstd * ((dxhat_j - mean_d) - xhat_j * mean_dx).
template <typename T, bool BLOCK>
__device__ void ln_backward_body(const T* __restrict__ x, const T* __restrict__ g, const T* __restrict__ mean,
                                 const T* __restrict__ invstd, const T* __restrict__ weight, i64 R, i64 D,
                                 T* __restrict__ dx) {
    using G = RowGroup<BLOCK>;
    __shared__ double scratch[32];
    const i64 stride = (i64)gridDim.x * G::rows_per_block();
    for (i64 r = (i64)blockIdx.x * G::rows_per_block() + G::row_in_block(); r < R; r += stride) {
        const T* xr = x + r * D;
        const T* gr = g + r * D;
        const T m = mean[r], k = invstd[r];
        double s = 0.0, sx = 0.0;
        for (i64 j = G::rank(); j < D; j += G::size()) {
            const double dxhat = (double)rn_mul(gr[j], weight != nullptr ? weight[j] : T(1));
            s += dxhat;
            sx += dxhat * (double)rn_mul(rn_sub(xr[j], m), k);
        }
        s = G::sum(s, scratch);
        sx = G::sum(sx, scratch);
        const T mean_d = (T)(s / (double)D), mean_dx = (T)(sx / (double)D);
        T* dxr = dx + r * D;
        for (i64 j = G::rank(); j < D; j += G::size()) {
            const T dxhat = rn_mul(gr[j], weight != nullptr ? weight[j] : T(1));
            const T xhat = rn_mul(rn_sub(xr[j], m), k);
            dxr[j] = rn_mul(k, rn_sub(rn_sub(dxhat, mean_d), rn_mul(xhat, mean_dx)));
        }
    }
}

extern "C" __global__ void ln_backward_warp_f32(const float* x, const float* g, const float* mean,
                                                const float* invstd, const float* weight, i64 R, i64 D, float* dx) {
    ln_backward_body<float, false>(x, g, mean, invstd, weight, R, D, dx);
}
extern "C" __global__ void ln_backward_warp_f64(const double* x, const double* g, const double* mean,
                                                const double* invstd, const double* weight, i64 R, i64 D,
                                                double* dx) {
    ln_backward_body<double, false>(x, g, mean, invstd, weight, R, D, dx);
}
extern "C" __global__ void ln_backward_block_f32(const float* x, const float* g, const float* mean,
                                                 const float* invstd, const float* weight, i64 R, i64 D, float* dx) {
    ln_backward_body<float, true>(x, g, mean, invstd, weight, R, D, dx);
}
extern "C" __global__ void ln_backward_block_f64(const double* x, const double* g, const double* mean,
                                                 const double* invstd, const double* weight, i64 R, i64 D,
                                                 double* dx) {
    ln_backward_body<double, true>(x, g, mean, invstd, weight, R, D, dx);
}

// ----- layer norm: weight and bias gradients --------------------------------------------------

// Columns per tile and rows in flight per block (a block is LN_TILE * LN_ROWS = 256 threads).
#define LN_TILE 32
#define LN_ROWS 8

// Block (tile, p): columns j = tile * 32 + (threadIdx.x & 31), rows [p * rows_per_chunk, ...) of
// its chunk, 8 at a time; pw[p * D + j] = sum(g * xhat) and pb[p * D + j] = sum(g) over the chunk,
// in double (the 8 row lanes added in order through shared memory).
template <typename T>
__device__ void ln_param_sum_body(const T* __restrict__ x, const T* __restrict__ g, const T* __restrict__ mean,
                                  const T* __restrict__ invstd, i64 R, i64 D, i64 rows_per_chunk,
                                  double* __restrict__ pw, double* __restrict__ pb) {
    __shared__ double sw[LN_ROWS][LN_TILE];
    __shared__ double sb[LN_ROWS][LN_TILE];
    const int tx = threadIdx.x & (LN_TILE - 1), ty = threadIdx.x / LN_TILE;
    const i64 j = (i64)blockIdx.x * LN_TILE + tx;
    const i64 p = blockIdx.y;
    const i64 r0 = p * rows_per_chunk;
    const i64 r1 = min(R, r0 + rows_per_chunk);
    double aw = 0.0, ab = 0.0;
    if (j < D) {
        for (i64 r = r0 + ty; r < r1; r += LN_ROWS) {
            const i64 i = r * D + j;
            const double gi = (double)g[i];
            aw += gi * (double)rn_mul(rn_sub(x[i], mean[r]), invstd[r]);
            ab += gi;
        }
    }
    sw[ty][tx] = aw;
    sb[ty][tx] = ab;
    __syncthreads();
    if (ty == 0 && j < D) {
        double tw = 0.0, tb = 0.0;
#pragma unroll
        for (int k = 0; k < LN_ROWS; ++k) {
            tw += sw[k][tx];
            tb += sb[k][tx];
        }
        pw[p * D + j] = tw;
        pb[p * D + j] = tb;
    }
}

extern "C" __global__ void ln_param_sum_f32(const float* x, const float* g, const float* mean, const float* invstd,
                                            i64 R, i64 D, i64 rows_per_chunk, double* pw, double* pb) {
    ln_param_sum_body(x, g, mean, invstd, R, D, rows_per_chunk, pw, pb);
}
extern "C" __global__ void ln_param_sum_f64(const double* x, const double* g, const double* mean,
                                            const double* invstd, i64 R, i64 D, i64 rows_per_chunk, double* pw,
                                            double* pb) {
    ln_param_sum_body(x, g, mean, invstd, R, D, rows_per_chunk, pw, pb);
}

// dweight[j] = sum over the P chunks of pw[p * D + j] (in order), dbias likewise; either output
// may be null.
template <typename T>
__device__ void ln_param_final_body(const double* __restrict__ pw, const double* __restrict__ pb, i64 P, i64 D,
                                    T* __restrict__ dweight, T* __restrict__ dbias) {
    RCMCL_FOR_EACH(j, D) {
        double tw = 0.0, tb = 0.0;
        for (i64 p = 0; p < P; ++p) {
            tw += pw[p * D + j];
            tb += pb[p * D + j];
        }
        if (dweight != nullptr) dweight[j] = (T)tw;
        if (dbias != nullptr) dbias[j] = (T)tb;
    }
}

extern "C" __global__ void ln_param_final_f32(const double* pw, const double* pb, i64 P, i64 D, float* dweight,
                                              float* dbias) {
    ln_param_final_body(pw, pb, P, D, dweight, dbias);
}
extern "C" __global__ void ln_param_final_f64(const double* pw, const double* pb, i64 P, i64 D, double* dweight,
                                              double* dbias) {
    ln_param_final_body(pw, pb, P, D, dweight, dbias);
}
