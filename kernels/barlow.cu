// Barlow Twins cross-correlation loss (ops/contrastive/cuda.rs): column standardisation, the loss
// with dL/dC in one pass, and the standardisation's backward. The two products C = z1n^T z2n and
// dz1n = z2n dC^T, dz2n = z1n dC go through cuBLAS (the engine's matmul).
//
// Column kernels (z is n x d row-major): a block covers BT_COLS neighbouring columns with BT_ROWS
// row groups (a warp reads BT_COLS consecutive elements of 32 / BT_COLS rows); each thread sums
// every BT_ROWS-th row of its column in f64, and the BT_ROWS partial sums of a column are joined
// by a fixed tree in shared memory. Results are reproducible bit for bit.
// - barlow_standardize: mean, then the biased variance about it (two passes), rstd = 1 /
//   sqrt(var + eps), then zn = (z - mean) * rstd (a third pass over the column slab).
// - barlow_loss: elementwise over C (= scale * P): dP = scale * dL/dC, and per-block f64 loss
//   partials (the grid is fixed by the caller from the size only, so the sum order is too).
// - barlow_sum: one block adds the partials.
// - barlow_standardize_grad: per column s1 = sum dzn, s2 = sum dzn * zn, then dz = g * rstd *
//   (dzn - s1 / n - zn * s2 / n).
//
// Every kernel expects blockDim.x == BT_THREADS.

#define BT_THREADS 256
#define BT_COLS 8
#define BT_ROWS (BT_THREADS / BT_COLS)

// Joins the BT_ROWS partial sums of each column in sh (a fixed tree); every thread then reads
// the column total from sh[0][tx]. Called by every thread of the block.
__device__ __forceinline__ void bt_join(double (*sh)[BT_COLS], int tx, int ty) {
    __syncthreads();
    for (int stride = BT_ROWS / 2; stride > 0; stride >>= 1) {
        if (ty < stride) sh[ty][tx] += sh[ty + stride][tx];
        __syncthreads();
    }
}

template <typename T>
__device__ void barlow_standardize(const T* z, i64 n, i64 d, double eps, T* zn, double* rstd) {
    __shared__ double sh[BT_ROWS][BT_COLS];
    const int tx = threadIdx.x % BT_COLS, ty = threadIdx.x / BT_COLS;
    const i64 tiles = (d + BT_COLS - 1) / BT_COLS;
    for (i64 tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const i64 c = tile * BT_COLS + tx;
        double s = 0.0;
        if (c < d)
            for (i64 i = ty; i < n; i += BT_ROWS) s += (double)z[i * d + c];
        sh[ty][tx] = s;
        bt_join(sh, tx, ty);
        const double mean = sh[0][tx] / (double)n;
        __syncthreads();  // everyone has read sh[0] before it is rewritten
        double v = 0.0;
        if (c < d)
            for (i64 i = ty; i < n; i += BT_ROWS) {
                const double dv = (double)z[i * d + c] - mean;
                v += dv * dv;
            }
        sh[ty][tx] = v;
        bt_join(sh, tx, ty);
        const double r = 1.0 / sqrt(sh[0][tx] / (double)n + eps);
        if (c < d) {
            if (ty == 0) rstd[c] = r;
            for (i64 i = ty; i < n; i += BT_ROWS) zn[i * d + c] = (T)(((double)z[i * d + c] - mean) * r);
        }
        __syncthreads();
    }
}

template <typename T>
__device__ void barlow_loss(const T* p, i64 d, double scale, double lambda, T* dp, double* partials) {
    __shared__ double scratch[32];
    double acc = 0.0;
    RCMCL_FOR_EACH(k, d * d) {
        const double c = (double)p[k] * scale;
        const i64 i = k / d;
        double dc;
        if (k - i * d == i) {
            acc += (1.0 - c) * (1.0 - c);
            dc = 2.0 * (c - 1.0);
        } else {
            acc += lambda * c * c;
            dc = 2.0 * lambda * c;
        }
        dp[k] = (T)(dc * scale);
    }
    const double total = block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

template <typename T> __device__ void barlow_sum(const double* partials, i64 count, T* out) {
    __shared__ double scratch[32];
    double a = 0.0;
    for (i64 i = threadIdx.x; i < count; i += blockDim.x) a += partials[i];
    const double total = block_sum(a, scratch);
    if (threadIdx.x == 0) out[0] = (T)total;
}

template <typename T>
__device__ void barlow_standardize_grad(const T* zn, const double* rstd, const T* dzn, const T* g,
                                        i64 n, i64 d, T* dz) {
    __shared__ double sh1[BT_ROWS][BT_COLS];
    __shared__ double sh2[BT_ROWS][BT_COLS];
    const int tx = threadIdx.x % BT_COLS, ty = threadIdx.x / BT_COLS;
    const double gv = (double)g[0];
    const i64 tiles = (d + BT_COLS - 1) / BT_COLS;
    for (i64 tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const i64 c = tile * BT_COLS + tx;
        double s1 = 0.0, s2 = 0.0;
        if (c < d)
            for (i64 i = ty; i < n; i += BT_ROWS) {
                const double gy = (double)dzn[i * d + c];
                s1 += gy;
                s2 += gy * (double)zn[i * d + c];
            }
        sh1[ty][tx] = s1;
        sh2[ty][tx] = s2;
        __syncthreads();
        for (int stride = BT_ROWS / 2; stride > 0; stride >>= 1) {
            if (ty < stride) {
                sh1[ty][tx] += sh1[ty + stride][tx];
                sh2[ty][tx] += sh2[ty + stride][tx];
            }
            __syncthreads();
        }
        if (c < d) {
            const double m1 = sh1[0][tx] / (double)n, m2 = sh2[0][tx] / (double)n;
            const double r = gv * rstd[c];
            for (i64 i = ty; i < n; i += BT_ROWS) {
                const i64 k = i * d + c;
                dz[k] = (T)(r * ((double)dzn[k] - m1 - (double)zn[k] * m2));
            }
        }
        __syncthreads();
    }
}

#define BT_KERNELS(NAME, T)                                                                       \
    extern "C" __global__ void __launch_bounds__(BT_THREADS)                                     \
        barlow_standardize_##NAME(const T* z, i64 n, i64 d, double eps, T* zn, double* rstd) {   \
        barlow_standardize<T>(z, n, d, eps, zn, rstd);                                            \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(BT_THREADS)                                     \
        barlow_loss_##NAME(const T* p, i64 d, double scale, double lambda, T* dp,                 \
                           double* partials) {                                                    \
        barlow_loss<T>(p, d, scale, lambda, dp, partials);                                        \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(BT_THREADS)                                     \
        barlow_sum_##NAME(const double* partials, i64 count, T* out) {                           \
        barlow_sum<T>(partials, count, out);                                                      \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(BT_THREADS) barlow_standardize_grad_##NAME(     \
        const T* zn, const double* rstd, const T* dzn, const T* g, i64 n, i64 d, T* dz) {        \
        barlow_standardize_grad<T>(zn, rstd, dzn, g, n, d, dz);                                   \
    }

BT_KERNELS(f32, float)
BT_KERNELS(f64, double)
