// Fused softmax-InfoNCE (ops/contrastive/cuda.rs): per-lane statistics of the logits in each
// direction, the scalar loss, and dL/dS in one elementwise pass.
//
// Logits S are n x m row-major, multiplied by `scale` (1/tau) as they are read. A lane is a row
// (row direction; positive: column i, or column 0 for a MoCo queue) or a column (column
// direction; positive: row j). kind: 0 uniform, 1 soft targets q (n x m), 2 queue, 3 hard
// negatives (HCL, beta, tau_plus, clamp floor n_neg * exp(log_floor)).
//
// Each lane is read once into an online state (running maximum and rescaled sums, f64 sums,
// exponentials in T): for cross-entropy kinds sum exp(x - max), sum q, sum q * x; for hard
// negatives, over the negatives only, A = sum exp((1 + beta)(x - max)) and B = sum exp(beta (x -
// max)). The states of the threads sharing a lane are joined by a fixed tree in shared memory, so
// results are reproducible bit for bit; the lane's loss and four statistics (f64) are written by
// one thread with the same formulas as the CPU reference (ops/contrastive/cpu.rs).
//
// - infonce_rows: one 256-thread block per row (grid-stride over rows).
// - infonce_cols: one block per NCE_COLS neighbouring columns, NCE_ROWS row groups (a warp reads
//   NCE_COLS consecutive elements of 32 / NCE_COLS rows: whole 32-byte sectors in f32).
// - infonce_loss: one block; w_row * sum(row losses) + w_col * sum(column losses).
// - infonce_grad: elementwise; dS = scale * g * (w_row * row term + w_col * column term).
//
// Every kernel expects blockDim.x == NCE_THREADS.

#define NCE_THREADS 256
#define NCE_COLS 8
#define NCE_ROWS (NCE_THREADS / NCE_COLS)

__device__ __forceinline__ float nce_exp(float x) { return expf(x); }
__device__ __forceinline__ double nce_exp(double x) { return exp(x); }

struct NceAcc {
    double mx;    // running maximum (-inf when empty)
    double s;     // CE: sum exp(x - mx); hard: A
    double b;     // hard: B
    double qsum;  // CE: sum q
    double qdot;  // CE: sum q * x
};

__device__ __forceinline__ NceAcc nce_empty() {
    NceAcc a;
    a.mx = -rcmcl_infinity<double>();
    a.s = 0.0;
    a.b = 0.0;
    a.qsum = 0.0;
    a.qdot = 0.0;
    return a;
}

template <typename T>
__device__ __forceinline__ void nce_push(NceAcc& a, int hard, double beta, T x, double q) {
    const double xd = (double)x;
    // Empty: no maximum yet and a zero sum (a NaN seen first leaves mx = -inf with a NaN sum,
    // which every later update keeps NaN).
    const bool empty = a.mx == -rcmcl_infinity<double>() && a.s == 0.0;
    if (hard) {
        if (empty) {
            if (xd == xd) {
                a.mx = xd;
                a.s = 1.0;
                a.b = 1.0;
            } else {
                a.s = xd;  // NaN
                a.b = xd;
            }
        } else if (xd > a.mx) {
            const T d = (T)(a.mx - xd);
            a.s = a.s * (double)nce_exp((T)((1.0 + beta) * (double)d)) + 1.0;
            a.b = a.b * (double)nce_exp((T)(beta * (double)d)) + 1.0;
            a.mx = xd;
        } else {
            const T d = (T)(xd - a.mx);
            a.s += (double)nce_exp((T)((1.0 + beta) * (double)d));
            a.b += (double)nce_exp((T)(beta * (double)d));
        }
    } else {
        if (empty) {
            a.mx = xd;
            a.s = 1.0;
            if (xd != xd) a.s = xd;
        } else if (xd > a.mx) {
            a.s = a.s * (double)nce_exp((T)(a.mx - xd)) + 1.0;
            a.mx = xd;
        } else {
            a.s += (double)nce_exp((T)(xd - a.mx));
        }
        a.qsum += q;
        a.qdot += q * xd;
    }
}

// exp(f * (from - to)) for a state's rescaling; 0 for an empty state.
__device__ __forceinline__ double nce_rescale(double from, double to, double f) {
    if (from == -rcmcl_infinity<double>()) return 0.0;
    if (f == 0.0) return 1.0;
    return exp(f * (from - to));
}

__device__ __forceinline__ NceAcc nce_join(NceAcc x, NceAcc y, int hard, double beta) {
    NceAcc r;
    r.mx = rcmcl_max(x.mx, y.mx);
    if (r.mx == -rcmcl_infinity<double>()) {
        r.s = x.s + y.s;
        r.b = x.b + y.b;
    } else if (hard) {
        r.s = x.s * nce_rescale(x.mx, r.mx, 1.0 + beta) + y.s * nce_rescale(y.mx, r.mx, 1.0 + beta);
        r.b = x.b * nce_rescale(x.mx, r.mx, beta) + y.b * nce_rescale(y.mx, r.mx, beta);
    } else {
        r.s = x.s * nce_rescale(x.mx, r.mx, 1.0) + y.s * nce_rescale(y.mx, r.mx, 1.0);
        r.b = 0.0;
    }
    // A NaN state (mx = -inf, sum NaN) keeps the join NaN.
    if (x.s != x.s || y.s != y.s) r.s = x.s != x.s ? x.s : y.s;
    r.qsum = x.qsum + y.qsum;
    r.qdot = x.qdot + y.qdot;
    return r;
}

// The lane's loss and statistics from its joined state, its positive logit xp and its number of
// negatives (hard only). Same formulas as cpu::lane_stats.
__device__ __forceinline__ void nce_finish(const NceAcc& a, double xp, double negs, int hard,
                                           double beta, double tau_plus, double log_floor,
                                           double* loss, double* st) {
    if (hard) {
        const double mn = a.mx;
        const double m = rcmcl_max(xp, mn);
        const double pos = exp(xp - m);
        const double e = exp(mn - m);
        const double reweight = e * negs * a.s / a.b;
        double ng = (-tau_plus * negs * pos + reweight) / (1.0 - tau_plus);
        const double floor = negs * exp(log_floor - m);
        const bool clamped = ng < floor;
        if (clamped) ng = floor;
        const double den = pos + ng;
        *loss = log(den) + m - xp;
        st[0] = mn;
        if (clamped) {
            st[1] = 0.0;
            st[2] = 0.0;
            st[3] = pos / den - 1.0;
        } else {
            const double w = e * negs / ((1.0 - tau_plus) * den * a.b);
            st[1] = w * (1.0 + beta);
            st[2] = -w * beta * a.s / a.b;
            st[3] = (pos - tau_plus * negs * pos / (1.0 - tau_plus)) / den - 1.0;
        }
    } else {
        const double l = log(a.s);
        *loss = a.qsum * (a.mx + l) - a.qdot;
        st[0] = a.mx;
        st[1] = l;
        st[2] = a.qsum;
        st[3] = 0.0;
    }
}

// d(lane loss)/d(logit) of one element (same as cpu::grad_term).
template <typename T>
__device__ __forceinline__ double nce_term(int hard, double beta, const double* st, T x,
                                           bool is_target, double q) {
    if (hard) {
        if (is_target) return st[3];
        const double d = (double)x - st[0];
        return st[1] * (double)nce_exp((T)((1.0 + beta) * d)) +
               st[2] * (double)nce_exp((T)(beta * d));
    }
    return st[2] * (double)nce_exp((T)((double)x - st[0] - st[1])) - q;
}

template <typename T>
__device__ void infonce_rows(const T* s, const T* q, i64 n, i64 m, double scale, int kind,
                             double beta, double tau_plus, double log_floor, double* loss,
                             double* stats) {
    __shared__ NceAcc sh[NCE_THREADS];
    const int hard = kind == 3;
    const T sc = (T)scale;
    const int tid = threadIdx.x;
    for (i64 row = blockIdx.x; row < n; row += gridDim.x) {
        const i64 t = kind == 2 ? 0 : row;
        const T* sr = s + row * m;
        NceAcc a = nce_empty();
        for (i64 j = tid; j < m; j += NCE_THREADS) {
            if (hard && j == t) continue;
            const double qv = q ? (double)q[row * m + j] : (j == t ? 1.0 : 0.0);
            nce_push<T>(a, hard, beta, sr[j] * sc, qv);
        }
        sh[tid] = a;
        __syncthreads();
        for (int stride = NCE_THREADS / 2; stride > 0; stride >>= 1) {
            if (tid < stride) sh[tid] = nce_join(sh[tid], sh[tid + stride], hard, beta);
            __syncthreads();
        }
        if (tid == 0) {
            nce_finish(sh[0], (double)(sr[t] * sc), (double)(m - 1), hard, beta, tau_plus,
                       log_floor, loss + row, stats + 4 * row);
        }
        __syncthreads();  // sh is rewritten for the next row
    }
}

// Square logits only (n == m): column j's positive is row j.
template <typename T>
__device__ void infonce_cols(const T* s, const T* q, i64 n, i64 m, double scale, int kind,
                             double beta, double tau_plus, double log_floor, double* loss,
                             double* stats) {
    __shared__ NceAcc sh[NCE_ROWS][NCE_COLS];
    const int hard = kind == 3;
    const T sc = (T)scale;
    const int tx = threadIdx.x % NCE_COLS, ty = threadIdx.x / NCE_COLS;
    const i64 tiles = (m + NCE_COLS - 1) / NCE_COLS;
    for (i64 tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const i64 j = tile * NCE_COLS + tx;
        NceAcc a = nce_empty();
        if (j < m) {
            for (i64 i = ty; i < n; i += NCE_ROWS) {
                if (hard && i == j) continue;
                const double qv = q ? (double)q[i * m + j] : (i == j ? 1.0 : 0.0);
                nce_push<T>(a, hard, beta, s[i * m + j] * sc, qv);
            }
        }
        sh[ty][tx] = a;
        __syncthreads();
        for (int stride = NCE_ROWS / 2; stride > 0; stride >>= 1) {
            if (ty < stride) sh[ty][tx] = nce_join(sh[ty][tx], sh[ty + stride][tx], hard, beta);
            __syncthreads();
        }
        if (ty == 0 && j < m) {
            nce_finish(sh[0][tx], (double)(s[j * m + j] * sc), (double)(n - 1), hard, beta,
                       tau_plus, log_floor, loss + j, stats + 4 * j);
        }
        __syncthreads();
    }
}

template <typename T>
__device__ void infonce_loss(const double* lr, i64 n, const double* lc, i64 m, double w_row,
                             double w_col, T* out) {
    __shared__ double scratch[32];
    double a = 0.0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) a += lr[i];
    const double sr = block_sum(a, scratch);
    double b = 0.0;
    if (lc)
        for (i64 j = threadIdx.x; j < m; j += blockDim.x) b += lc[j];
    const double scol = block_sum(b, scratch);
    if (threadIdx.x == 0) out[0] = (T)(w_row * sr + w_col * scol);
}

template <typename T>
__device__ void infonce_grad(const T* s, const T* q, i64 n, i64 m, double scale, int kind,
                             double beta, const double* rs, const double* cs, const T* g,
                             double w_row, double w_col, T* out) {
    const int hard = kind == 3;
    const double gs = (double)g[0] * scale;
    const T sc = (T)scale;
    RCMCL_FOR_EACH(k, n * m) {
        const i64 i = k / m, j = k - i * m;
        const T x = s[k] * sc;
        const bool rt = kind == 2 ? j == 0 : j == i;
        const double qv = q ? (double)q[k] : (rt ? 1.0 : 0.0);
        double d = w_row * nce_term<T>(hard, beta, rs + 4 * i, x, rt, qv);
        if (cs) d += w_col * nce_term<T>(hard, beta, cs + 4 * j, x, i == j, qv);
        out[k] = (T)(d * gs);
    }
}

#define NCE_KERNELS(NAME, T)                                                                      \
    extern "C" __global__ void __launch_bounds__(NCE_THREADS)                                    \
        infonce_rows_##NAME(const T* s, const T* q, i64 n, i64 m, double scale, int kind,         \
                            double beta, double tau_plus, double log_floor, double* loss,         \
                            double* stats) {                                                      \
        infonce_rows<T>(s, q, n, m, scale, kind, beta, tau_plus, log_floor, loss, stats);        \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(NCE_THREADS)                                    \
        infonce_cols_##NAME(const T* s, const T* q, i64 n, i64 m, double scale, int kind,         \
                            double beta, double tau_plus, double log_floor, double* loss,         \
                            double* stats) {                                                      \
        infonce_cols<T>(s, q, n, m, scale, kind, beta, tau_plus, log_floor, loss, stats);        \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(NCE_THREADS)                                    \
        infonce_loss_##NAME(const double* lr, i64 n, const double* lc, i64 m, double w_row,      \
                            double w_col, T* out) {                                               \
        infonce_loss<T>(lr, n, lc, m, w_row, w_col, out);                                         \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(NCE_THREADS)                                    \
        infonce_grad_##NAME(const T* s, const T* q, i64 n, i64 m, double scale, int kind,         \
                            double beta, const double* rs, const double* cs, const T* g,          \
                            double w_row, double w_col, T* out) {                                 \
        infonce_grad<T>(s, q, n, m, scale, kind, beta, rs, cs, g, w_row, w_col, out);            \
    }

NCE_KERNELS(f32, float)
NCE_KERNELS(f64, double)
