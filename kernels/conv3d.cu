// 3D convolution (NCDHW, cross-correlation as PyTorch) and 3D pooling, forward and backward.
//
// Convolution runs as implicit GEMM: the im2col matrix is never stored; each tile of it is built
// in shared memory as it is needed, with zeros for taps that fall in the padding.
//
// - Forward: Y (M x N) = A (M x K) * B (K x N) with M = batch * Do * Ho * Wo output positions,
//   N = C_out, K = C_in * kt * kh * kw; A[m][k] = x at the tap k of position m, B[k][o] = w[o][k].
// - Input gradient: dX (M x N) = A (M x K) * B (K x N) with M = batch * D * H * W input positions,
//   N = C_in, K = C_out * kt * kh * kw; A[m][k = (o, a, b, e)] = dY[o] at the output position
//   whose tap (a, b, e) lands on m (zero when none does: stride does not divide or out of range),
//   B[k][c] = w[o][c][a][b][e].
// - Weight gradient: dW (C_out x K) = dY (C_out x L) * cols (L x K), L = batch * Do * Ho * Wo,
//   split along L into S ranges (grid.z); split s writes its partial product to part[s] and
//   `conv3d_sum_splits` adds the S partials in order: no atomics, the same bits on every run.
//
// Tiles: 64 x 64 outputs per block of 256 threads, K-steps of 16 staged in shared memory
// (As[16][64], Bs[16][64]); thread (tx = tid % 16, ty = tid / 16) accumulates a 4 x 4 register
// tile at rows tx + 16 i and columns ty + 16 j (forward, input gradient: the M index runs along
// tx so stores are coalesced) or rows ty + 16 i and columns tx + 16 j (weight gradient: K runs
// along tx). Every thread reaches every __syncthreads (bounds only mask loads and stores).
//
// Pooling: one thread per output (forward) or per input element (backward, gathering the output
// gradients of the windows that cover it in window order: deterministic, no atomics).
//
// Sizes are passed as int (every dimension, and M, N, K, fit easily); offsets into tensors are
// i64. Kernel names and argument orders must match `engine/src/ops/conv/cuda.rs`.

#define CONV_BM 64
#define CONV_BN 64
#define CONV_BK 16
#define CONV_THREADS 256

struct ConvGeo {
    int n, ci, co;
    int D, H, W;
    int kt, kh, kw;
    int st, sh, sw;
    int pt, ph, pw;
    int Do, Ho, Wo;
};

#define CONV_GEO_PARAMS                                                                          \
    int n, int ci, int co, int D, int H, int W, int kt, int kh, int kw, int st, int sh, int sw,  \
        int pt, int ph, int pw, int Do, int Ho, int Wo
#define CONV_GEO_ARGS n, ci, co, D, H, W, kt, kh, kw, st, sh, sw, pt, ph, pw, Do, Ho, Wo

__device__ __forceinline__ ConvGeo conv_geo(CONV_GEO_PARAMS) {
    ConvGeo g;
    g.n = n; g.ci = ci; g.co = co;
    g.D = D; g.H = H; g.W = W;
    g.kt = kt; g.kh = kh; g.kw = kw;
    g.st = st; g.sh = sh; g.sw = sw;
    g.pt = pt; g.ph = ph; g.pw = pw;
    g.Do = Do; g.Ho = Ho; g.Wo = Wo;
    return g;
}

// ----- forward ---------------------------------------------------------------------------------

template <typename T>
__device__ void conv3d_fwd(const T* __restrict__ x, const T* __restrict__ w,
                           const T* __restrict__ bias, int has_bias, T* __restrict__ y,
                           const ConvGeo g) {
    __shared__ T As[CONV_BK][CONV_BM];
    __shared__ T Bs[CONV_BK][CONV_BN];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int P = g.Do * g.Ho * g.Wo;
    const int M = g.n * P;
    const int kvol = g.kt * g.kh * g.kw, khw = g.kh * g.kw;
    const int K = g.ci * kvol;
    const int m0 = blockIdx.x * CONV_BM, n0 = blockIdx.y * CONV_BN;

    // This thread's A row (fixed over the K loop) and its window origin.
    const int am = tid % CONV_BM, ak0 = tid / CONV_BM;  // loads k = ak0 + 4 r
    const int m = m0 + am;
    const bool m_ok = m < M;
    int z0 = 0, y0 = 0, x0 = 0;
    const T* xb = x;
    if (m_ok) {
        const int ni = m / P, p = m - ni * P;
        const int zo = p / (g.Ho * g.Wo), yo = (p / g.Wo) % g.Ho, xo = p % g.Wo;
        z0 = zo * g.st - g.pt;
        y0 = yo * g.sh - g.ph;
        x0 = xo * g.sw - g.pw;
        xb = x + (i64)ni * g.ci * g.D * g.H * g.W;
    }
    // This thread's B column slots: k = bk, output channels n0 + bn0 + 16 r.
    const int bk = tid % CONV_BK, bn0 = tid / CONV_BK;

    T acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = (T)0;

    for (int k0 = 0; k0 < K; k0 += CONV_BK) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int kk = ak0 + 4 * r;
            const int k = k0 + kk;
            T v = (T)0;
            if (m_ok && k < K) {
                const int c = k / kvol, t = k - c * kvol;
                const int a = t / khw, b = (t / g.kw) % g.kh, e = t % g.kw;
                const int zz = z0 + a, yy = y0 + b, xx = x0 + e;
                if (zz >= 0 && zz < g.D && yy >= 0 && yy < g.H && xx >= 0 && xx < g.W)
                    v = xb[(((i64)c * g.D + zz) * g.H + yy) * g.W + xx];
            }
            As[kk][am] = v;
        }
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int nn = bn0 + 16 * r;
            const int o = n0 + nn, k = k0 + bk;
            Bs[bk][nn] = (o < g.co && k < K) ? w[(i64)o * K + k] : (T)0;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < CONV_BK; kk++) {
            T av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) av[i] = As[kk][tx + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) bv[j] = Bs[kk][ty + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int mm = m0 + tx + 16 * i;
        if (mm >= M) continue;
        const int ni = mm / P, p = mm - ni * P;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int o = n0 + ty + 16 * j;
            if (o >= g.co) continue;
            const T b = has_bias ? bias[o] : (T)0;
            y[((i64)ni * g.co + o) * P + p] = acc[i][j] + b;
        }
    }
}

// ----- input gradient --------------------------------------------------------------------------

template <typename T>
__device__ void conv3d_dgrad(const T* __restrict__ gy, const T* __restrict__ w,
                             T* __restrict__ dx, const ConvGeo g) {
    __shared__ T As[CONV_BK][CONV_BM];
    __shared__ T Bs[CONV_BK][CONV_BN];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int S = g.D * g.H * g.W;
    const int P = g.Do * g.Ho * g.Wo;
    const int M = g.n * S;
    const int kvol = g.kt * g.kh * g.kw, khw = g.kh * g.kw;
    const int K = g.co * kvol;
    const int m0 = blockIdx.x * CONV_BM, n0 = blockIdx.y * CONV_BN;

    // This thread's A row: the input position m, shifted by the padding.
    const int am = tid % CONV_BM, ak0 = tid / CONV_BM;
    const int m = m0 + am;
    const bool m_ok = m < M;
    int zp = 0, yp = 0, xp = 0;
    const T* gb = gy;
    if (m_ok) {
        const int ni = m / S, s = m - ni * S;
        zp = s / (g.H * g.W) + g.pt;
        yp = (s / g.W) % g.H + g.ph;
        xp = s % g.W + g.pw;
        gb = gy + (i64)ni * g.co * P;
    }
    const int bk = tid % CONV_BK, bn0 = tid / CONV_BK;

    T acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = (T)0;

    for (int k0 = 0; k0 < K; k0 += CONV_BK) {
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int kk = ak0 + 4 * r;
            const int k = k0 + kk;
            T v = (T)0;
            if (m_ok && k < K) {
                const int o = k / kvol, t = k - o * kvol;
                const int a = t / khw, b = (t / g.kw) % g.kh, e = t % g.kw;
                const int zn = zp - a, yn = yp - b, xn = xp - e;
                if (zn >= 0 && yn >= 0 && xn >= 0 && zn % g.st == 0 && yn % g.sh == 0 &&
                    xn % g.sw == 0) {
                    const int zo = zn / g.st, yo = yn / g.sh, xo = xn / g.sw;
                    if (zo < g.Do && yo < g.Ho && xo < g.Wo)
                        v = gb[(i64)o * P + ((i64)zo * g.Ho + yo) * g.Wo + xo];
                }
            }
            As[kk][am] = v;
        }
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int nn = bn0 + 16 * r;
            const int c = n0 + nn, k = k0 + bk;
            T v = (T)0;
            if (c < g.ci && k < K) {
                const int o = k / kvol, t = k - o * kvol;
                v = w[((i64)o * g.ci + c) * kvol + t];
            }
            Bs[bk][nn] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < CONV_BK; kk++) {
            T av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) av[i] = As[kk][tx + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) bv[j] = Bs[kk][ty + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int mm = m0 + tx + 16 * i;
        if (mm >= M) continue;
        const int ni = mm / S, s = mm - ni * S;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int c = n0 + ty + 16 * j;
            if (c >= g.ci) continue;
            dx[((i64)ni * g.ci + c) * S + s] = acc[i][j];
        }
    }
}

// ----- weight gradient -------------------------------------------------------------------------

// Block (x: K tile, y: C_out tile, z: split) writes part[z][o][k] = sum over its L range of
// gy[o, l] * cols[k, l]; `chunk` (a multiple of CONV_BK) is the length of every split's range.
template <typename T>
__device__ void conv3d_wgrad(const T* __restrict__ x, const T* __restrict__ gy,
                             T* __restrict__ part, int chunk, const ConvGeo g) {
    __shared__ T As[CONV_BK][CONV_BM];  // gy tile: As[l][o]
    __shared__ T Bs[CONV_BK][CONV_BN];  // cols tile: Bs[l][k]
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int P = g.Do * g.Ho * g.Wo;
    const int L = g.n * P;
    const int kvol = g.kt * g.kh * g.kw, khw = g.kh * g.kw;
    const int K = g.ci * kvol;
    const int n0 = blockIdx.x * CONV_BN, m0 = blockIdx.y * CONV_BM;
    const int l_begin = blockIdx.z * chunk;
    const int l_end = min(L, l_begin + chunk);

    // Loader slots: l = l0 + ll; rows o = m0 + slot, columns k = n0 + slot, slot = tid/16 + 16 r.
    const int ll = tid % CONV_BK, slot0 = tid / CONV_BK;
    // The kernel taps of this thread's 4 columns, decoded once.
    int kc[4], ka[4], kb[4], ke[4];
    bool k_ok[4];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const int k = n0 + slot0 + 16 * r;
        k_ok[r] = k < K;
        const int c = k / kvol, t = k - c * kvol;
        kc[r] = c;
        ka[r] = t / khw;
        kb[r] = (t / g.kw) % g.kh;
        ke[r] = t % g.kw;
    }

    T acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = (T)0;

    for (int l0 = l_begin; l0 < l_end; l0 += CONV_BK) {
        const int l = l0 + ll;
        const bool l_ok = l < l_end;
        int ni = 0, p = 0, z0 = 0, y0 = 0, x0 = 0;
        if (l_ok) {
            ni = l / P;
            p = l - ni * P;
            const int zo = p / (g.Ho * g.Wo), yo = (p / g.Wo) % g.Ho, xo = p % g.Wo;
            z0 = zo * g.st - g.pt;
            y0 = yo * g.sh - g.ph;
            x0 = xo * g.sw - g.pw;
        }
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int slot = slot0 + 16 * r;
            const int o = m0 + slot;
            As[ll][slot] = (l_ok && o < g.co) ? gy[((i64)ni * g.co + o) * P + p] : (T)0;
            T v = (T)0;
            if (l_ok && k_ok[r]) {
                const int zz = z0 + ka[r], yy = y0 + kb[r], xx = x0 + ke[r];
                if (zz >= 0 && zz < g.D && yy >= 0 && yy < g.H && xx >= 0 && xx < g.W)
                    v = x[((((i64)ni * g.ci + kc[r]) * g.D + zz) * g.H + yy) * g.W + xx];
            }
            Bs[ll][slot] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < CONV_BK; kk++) {
            T av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; i++) av[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }

    T* out = part + (i64)blockIdx.z * g.co * K;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int o = m0 + ty + 16 * i;
        if (o >= g.co) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int k = n0 + tx + 16 * j;
            if (k < K) out[(i64)o * K + k] = acc[i][j];
        }
    }
}

// dw[i] = sum over s < splits of part[s * len + i], in split order.
template <typename T>
__device__ void conv3d_sum_splits(const T* __restrict__ part, T* __restrict__ dw, i64 len,
                                  int splits) {
    RCMCL_FOR_EACH(i, len) {
        T s = part[i];
        for (int k = 1; k < splits; k++) s += part[(i64)k * len + i];
        dw[i] = s;
    }
}

// ----- pooling ---------------------------------------------------------------------------------

#define POOL_PARAMS                                                                              \
    i64 planes, int D, int H, int W, int kt, int kh, int kw, int st, int sh, int sw, int pt,     \
        int ph, int pw, int Do, int Ho, int Wo

// The windows along one axis that cover input position i: [*lo, *hi).
__device__ __forceinline__ void pool_covering(int i, int k, int s, int pad, int out, int* lo,
                                              int* hi) {
    const int ip = i + pad;
    *lo = (ip + 1 >= k) ? (ip + 1 - k + s - 1) / s : 0;
    *hi = min(ip / s + 1, out);
}

// Max pooling: the first NaN of a window wins, otherwise the first of the largest values;
// padding never wins. arg is the flat index (z * H + y) * W + x within the input plane.
template <typename T>
__device__ void max_pool3d_fwd(const T* __restrict__ x, T* __restrict__ y, i64* __restrict__ arg,
                               POOL_PARAMS) {
    const i64 IP = (i64)D * H * W, OP = (i64)Do * Ho * Wo;
    RCMCL_FOR_EACH(q, planes * OP) {
        const i64 pl = q / OP;
        const int r = (int)(q - pl * OP);
        const int zo = r / (Ho * Wo), yo = (r / Wo) % Ho, xo = r % Wo;
        const T* xp = x + pl * IP;
        T best = -rcmcl_infinity<T>();
        int at = -1;
        for (int a = 0; a < kt; a++) {
            const int z = zo * st - pt + a;
            if (z < 0 || z >= D) continue;
            for (int b = 0; b < kh; b++) {
                const int yy = yo * sh - ph + b;
                if (yy < 0 || yy >= H) continue;
                for (int e = 0; e < kw; e++) {
                    const int xx = xo * sw - pw + e;
                    if (xx < 0 || xx >= W) continue;
                    const int t = (z * H + yy) * W + xx;
                    if (at < 0) at = t;
                    const T v = xp[t];
                    if (!(best != best) && (v > best || v != v)) {
                        best = v;
                        at = t;
                    }
                }
            }
        }
        y[q] = best;
        arg[q] = at < 0 ? 0 : at;
    }
}

template <typename T>
__device__ void max_pool3d_bwd(const T* __restrict__ gy, const i64* __restrict__ arg,
                               T* __restrict__ dx, POOL_PARAMS) {
    const i64 IP = (i64)D * H * W, OP = (i64)Do * Ho * Wo;
    RCMCL_FOR_EACH(i, planes * IP) {
        const i64 pl = i / IP;
        const int s = (int)(i - pl * IP);
        const int z = s / (H * W), yy = (s / W) % H, xx = s % W;
        int zl, zh, yl, yh, xl, xh;
        pool_covering(z, kt, st, pt, Do, &zl, &zh);
        pool_covering(yy, kh, sh, ph, Ho, &yl, &yh);
        pool_covering(xx, kw, sw, pw, Wo, &xl, &xh);
        T acc = (T)0;
        for (int zo = zl; zo < zh; zo++)
            for (int yo = yl; yo < yh; yo++)
                for (int xo = xl; xo < xh; xo++) {
                    const i64 q = pl * OP + ((i64)zo * Ho + yo) * Wo + xo;
                    if (arg[q] == s) acc += gy[q];
                }
        dx[i] = acc;
    }
}

// Average pooling, padding counted as zeros: every window divided by kt * kh * kw.
template <typename T>
__device__ void avg_pool3d_fwd(const T* __restrict__ x, T* __restrict__ y, POOL_PARAMS) {
    const i64 IP = (i64)D * H * W, OP = (i64)Do * Ho * Wo;
    const T inv = (T)1 / (T)(kt * kh * kw);
    RCMCL_FOR_EACH(q, planes * OP) {
        const i64 pl = q / OP;
        const int r = (int)(q - pl * OP);
        const int zo = r / (Ho * Wo), yo = (r / Wo) % Ho, xo = r % Wo;
        const T* xp = x + pl * IP;
        T s = (T)0;
        for (int a = 0; a < kt; a++) {
            const int z = zo * st - pt + a;
            if (z < 0 || z >= D) continue;
            for (int b = 0; b < kh; b++) {
                const int yy = yo * sh - ph + b;
                if (yy < 0 || yy >= H) continue;
                for (int e = 0; e < kw; e++) {
                    const int xx = xo * sw - pw + e;
                    if (xx < 0 || xx >= W) continue;
                    s += xp[(z * H + yy) * W + xx];
                }
            }
        }
        y[q] = s * inv;
    }
}

template <typename T>
__device__ void avg_pool3d_bwd(const T* __restrict__ gy, T* __restrict__ dx, POOL_PARAMS) {
    const i64 IP = (i64)D * H * W, OP = (i64)Do * Ho * Wo;
    const T inv = (T)1 / (T)(kt * kh * kw);
    RCMCL_FOR_EACH(i, planes * IP) {
        const i64 pl = i / IP;
        const int s = (int)(i - pl * IP);
        const int z = s / (H * W), yy = (s / W) % H, xx = s % W;
        int zl, zh, yl, yh, xl, xh;
        pool_covering(z, kt, st, pt, Do, &zl, &zh);
        pool_covering(yy, kh, sh, ph, Ho, &yl, &yh);
        pool_covering(xx, kw, sw, pw, Wo, &xl, &xh);
        T acc = (T)0;
        for (int zo = zl; zo < zh; zo++)
            for (int yo = yl; yo < yh; yo++)
                for (int xo = xl; xo < xh; xo++)
                    acc += gy[pl * OP + ((i64)zo * Ho + yo) * Wo + xo] * inv;
        dx[i] = acc;
    }
}

#define POOL_ARGS planes, D, H, W, kt, kh, kw, st, sh, sw, pt, ph, pw, Do, Ho, Wo

#define CONV3D_KERNELS(T, S)                                                                     \
    extern "C" __global__ void __launch_bounds__(CONV_THREADS)                                   \
        conv3d_fwd_##S(const T* x, const T* w, const T* bias, int has_bias, T* y,                \
                       CONV_GEO_PARAMS) {                                                        \
        conv3d_fwd<T>(x, w, bias, has_bias, y, conv_geo(CONV_GEO_ARGS));                         \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(CONV_THREADS)                                   \
        conv3d_dgrad_##S(const T* gy, const T* w, T* dx, CONV_GEO_PARAMS) {                      \
        conv3d_dgrad<T>(gy, w, dx, conv_geo(CONV_GEO_ARGS));                                     \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(CONV_THREADS)                                   \
        conv3d_wgrad_##S(const T* x, const T* gy, T* part, int chunk, CONV_GEO_PARAMS) {         \
        conv3d_wgrad<T>(x, gy, part, chunk, conv_geo(CONV_GEO_ARGS));                            \
    }                                                                                            \
    extern "C" __global__ void conv3d_sum_splits_##S(const T* part, T* dw, i64 len, int splits) { \
        conv3d_sum_splits<T>(part, dw, len, splits);                                             \
    }                                                                                            \
    extern "C" __global__ void max_pool3d_fwd_##S(const T* x, T* y, i64* arg, POOL_PARAMS) {     \
        max_pool3d_fwd<T>(x, y, arg, POOL_ARGS);                                                 \
    }                                                                                            \
    extern "C" __global__ void max_pool3d_bwd_##S(const T* gy, const i64* arg, T* dx,            \
                                                  POOL_PARAMS) {                                 \
        max_pool3d_bwd<T>(gy, arg, dx, POOL_ARGS);                                               \
    }                                                                                            \
    extern "C" __global__ void avg_pool3d_fwd_##S(const T* x, T* y, POOL_PARAMS) {               \
        avg_pool3d_fwd<T>(x, y, POOL_ARGS);                                                      \
    }                                                                                            \
    extern "C" __global__ void avg_pool3d_bwd_##S(const T* gy, T* dx, POOL_PARAMS) {             \
        avg_pool3d_bwd<T>(gy, dx, POOL_ARGS);                                                    \
    }

CONV3D_KERNELS(float, f32)
CONV3D_KERNELS(double, f64)
