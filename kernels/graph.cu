// Graph aggregation, the ST-GCN spatial step (engine/src/ops/graph, docs/kernels.md "Graph
// aggregation"):
//
//   y[n,c,t,w]    = sum_k sum_v x[n,kC+c,t,v] * A'[k,v,w]          (ga_forward_*)
//   dx[n,kC+c,t,v] = sum_w dy[n,c,t,w] * A'[k,v,w]                  (ga_grad_input_*)
//   dA[k,v,w]     = sum_{n,c,t} x[n,kC+c,t,v] * dy[n,c,t,w]          (ga_grad_adj_* + _final_*)
//
// A' is A with the rows and columns of masked joints replaced by 0 (selection, not product), x
// and dy read 0 at masked joints and every result is written 0 at masked joints, so garbage in
// padded joints never leaks. `mask` may be null (every joint real).
//
// Layout: for a sample n and partition k, the C*T rows of V joints of x form one contiguous slab
// ((n*K + k)*CT*V); y and dy have one slab per sample (n*CT*V). A "row" is one (c, t).
//
// Forward and input gradient (one kernel body, `ga_rows`): a block of GA_ROWS = 128 threads
// owns 128 consecutive rows of one sample; thread r owns row r and keeps its WMAX (32 or 64)
// outputs in registers. The reduction dimension (v for the forward, w for dx) is walked in
// chunks of VC columns: each chunk stages A' (VC x WMAX, zero beyond V) and the 128 x VC input
// tile (coalesced: a warp reads a row's contiguous joints) in shared memory; every thread then
// reads its row's input value once and the adjacency row as 4-wide broadcast loads. The forward
// sums all K partitions into the same registers (one pass over x, all partitions fused); dx
// writes one output slab per partition and reads A' transposed (ga_transpose_adj, a K*V*V
// prologue) so both directions stage the adjacency with the same contiguous, conflict-free loads. Outputs leave through a shared staging tile so global
// writes are coalesced. Static shared memory, at most 42 KB (f64), so no opt-in is needed for
// V = 64 and any K: the adjacency is staged one (partition, chunk) at a time, never whole.
//
// Adjacency gradient: grid (P, K); block (p, k) sums rows [p*R, min((p+1)*R, M)) of the
// M = N*C*T rows in chunks of 32 rows staged in shared memory; each thread owns a 4 x 4 tile of
// (v, w), and when V is small the block splits the chunk's rows among G groups of threads. The
// groups' tiles are added in a fixed order in shared memory and the block writes its V x V
// partial; ga_grad_adj_final adds the P partials in order, in f64. No atomics: deterministic.

#define GA_ROWS 128  // rows per block (= threads per block) of ga_rows
#define GA_YPAD 33   // row stride of the shared tile (32 columns + 1: conflict-free)
#define GD_ROWS 32   // rows per staged chunk of the adjacency gradient
#define GD_PAD 64    // row stride of its tiles (V <= 64)
#define GD_THREADS 256

template <typename T> __device__ __forceinline__ bool ga_on(const T* mask, i64 j) {
    return mask == nullptr || mask[j] != T(0);
}

// Four consecutive values from 16-byte-aligned shared memory, as wide loads.
__device__ __forceinline__ void ga_load4(const float* p, float* o) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    o[0] = v.x;
    o[1] = v.y;
    o[2] = v.z;
    o[3] = v.w;
}
__device__ __forceinline__ void ga_load4(const double* p, double* o) {
    const double2 a = *reinterpret_cast<const double2*>(p);
    const double2 b = *reinterpret_cast<const double2*>(p + 2);
    o[0] = a.x;
    o[1] = a.y;
    o[2] = b.x;
    o[3] = b.y;
}

// Reduction columns staged per chunk: 32, except f64 with 64 outputs per row (16), so static
// shared memory stays under 48 KB.
template <typename T, int WMAX> struct GaChunk { static const int value = 32; };
template <> struct GaChunk<double, 64> { static const int value = 16; };

// BWD = false: in = x, adj = A, out = y (sum over k). BWD = true: in = dy, adj = A'^T (from
// ga_transpose_adj), out = dx (one slab per k).
// Launch: blockDim GA_ROWS, gridDim tiles * N (block b: sample b / tiles, rows
// (b % tiles) * GA_ROWS ...); requires V <= WMAX.
template <typename T, int WMAX, bool BWD>
__device__ void ga_rows(const T* __restrict__ in, const T* __restrict__ adj, const T* __restrict__ mask,
                        T* __restrict__ out, i64 K, i64 CT, i64 V, i64 tiles) {
    constexpr int VC = GaChunk<T, WMAX>::value;
    constexpr int XS = VC + 1;  // row stride of the staged input tile (<= GA_YPAD)
    __shared__ __align__(16) T As[VC * WMAX];
    __shared__ __align__(16) T tile[GA_ROWS * GA_YPAD];

    const i64 n = blockIdx.x / tiles;
    const i64 row0 = (blockIdx.x % tiles) * GA_ROWS;
    const int rows = (int)min((i64)GA_ROWS, CT - row0);
    const int r = threadIdx.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int warps = GA_ROWS / 32;
    const int nchunks = (int)((V + VC - 1) / VC);

    T acc[WMAX];
#pragma unroll
    for (int j = 0; j < WMAX; ++j) acc[j] = T(0);

    for (i64 k = 0; k < K; ++k) {
        const T* ink = in + ((BWD ? n : n * K + k) * CT + row0) * V;
        for (int ch = 0; ch < nchunks; ++ch) {
            const int c0 = ch * VC;
            const int vc = (int)min((i64)VC, V - c0);
            __syncthreads();  // the previous chunk (or staging) is no longer read
            // A' chunk: As[i * WMAX + j] = adj[k][c0 + i][j] multiplies input column c0 + i
            // into output column j (j fastest: contiguous in adj and conflict-free in As). For
            // dx, adj is A' already transposed by ga_transpose_adj.
            for (int e = threadIdx.x; e < VC * WMAX; e += GA_ROWS) {
                const int i = e / WMAX, j = e % WMAX;
                T val = T(0);
                if (i < vc && j < V && ga_on(mask, c0 + i) && ga_on(mask, j))
                    val = adj[(k * V + c0 + i) * V + j];
                As[e] = val;
            }
            // The input tile: a warp reads a row's vc contiguous values.
            for (int rr = warp; rr < GA_ROWS; rr += warps) {
                if (lane < vc) {
                    T val = T(0);
                    if (rr < rows && ga_on(mask, c0 + lane)) val = ink[(i64)rr * V + c0 + lane];
                    tile[rr * XS + lane] = val;
                }
            }
            __syncthreads();
            const T* xr = tile + r * XS;
            for (int i = 0; i < vc; ++i) {
                const T xv = xr[i];
                const T* ar = As + i * WMAX;
#pragma unroll
                for (int j = 0; j < WMAX; j += 4) {
                    T a[4];
                    ga_load4(ar + j, a);
                    acc[j] += xv * a[0];
                    acc[j + 1] += xv * a[1];
                    acc[j + 2] += xv * a[2];
                    acc[j + 3] += xv * a[3];
                }
            }
        }
        if (BWD || k == K - 1) {
            T* outk = out + ((BWD ? n * K + k : n) * CT + row0) * V;
#pragma unroll
            for (int h = 0; h < WMAX / 32; ++h) {
                __syncthreads();  // the tile is no longer read
#pragma unroll
                for (int j = 0; j < 32; ++j) tile[r * GA_YPAD + j] = acc[h * 32 + j];
                __syncthreads();
                const int w = h * 32 + lane;
                if (w < V) {
                    const bool keep = ga_on(mask, w);
                    for (int rr = warp; rr < rows; rr += warps)
                        outk[(i64)rr * V + w] = keep ? tile[rr * GA_YPAD + lane] : T(0);
                }
            }
            if (BWD) {
#pragma unroll
                for (int j = 0; j < WMAX; ++j) acc[j] = T(0);
            }
        }
    }
}

#define GA_ROWS_KERNEL(name, T, WMAX, BWD)                                                          \
    extern "C" __global__ void __launch_bounds__(GA_ROWS)                                           \
        name(const T* in, const T* adj, const T* mask, T* out, i64 K, i64 CT, i64 V, i64 tiles) {   \
        ga_rows<T, WMAX, BWD>(in, adj, mask, out, K, CT, V, tiles);                                 \
    }
GA_ROWS_KERNEL(ga_forward_w32_f32, float, 32, false)
GA_ROWS_KERNEL(ga_forward_w64_f32, float, 64, false)
GA_ROWS_KERNEL(ga_forward_w32_f64, double, 32, false)
GA_ROWS_KERNEL(ga_forward_w64_f64, double, 64, false)
GA_ROWS_KERNEL(ga_grad_input_w32_f32, float, 32, true)
GA_ROWS_KERNEL(ga_grad_input_w64_f32, float, 64, true)
GA_ROWS_KERNEL(ga_grad_input_w32_f64, double, 32, true)
GA_ROWS_KERNEL(ga_grad_input_w64_f64, double, 64, true)

// out[k][a][b] = A'[k][b][a]: the masked, transposed adjacency the input gradient multiplies by.
template <typename T>
__device__ void ga_transpose_adj(const T* __restrict__ adj, const T* __restrict__ mask, T* __restrict__ out,
                                 i64 K, i64 V) {
    const i64 VV = V * V;
    RCMCL_FOR_EACH(e, K * VV) {
        const i64 k = e / VV, a = (e % VV) / V, b = e % V;
        out[e] = (ga_on(mask, a) && ga_on(mask, b)) ? adj[k * VV + b * V + a] : T(0);
    }
}
extern "C" __global__ void ga_transpose_adj_f32(const float* adj, const float* mask, float* out, i64 K, i64 V) {
    ga_transpose_adj<float>(adj, mask, out, K, V);
}
extern "C" __global__ void ga_transpose_adj_f64(const double* adj, const double* mask, double* out, i64 K, i64 V) {
    ga_transpose_adj<double>(adj, mask, out, K, V);
}

// Per-block partial sums of the adjacency gradient (see the top of the file). Launch: gridDim
// (P, K), blockDim GD_THREADS; rows_per_part * P >= M = N * CT; partial is (K, P, V, V).
template <typename T>
__device__ void ga_grad_adj(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ partial,
                            i64 K, i64 CT, i64 V, i64 M, i64 rows_per_part) {
    __shared__ __align__(16) T buf[2 * GD_ROWS * GD_PAD];  // x tile, dy tile; then the groups' sums
    __shared__ i64 xrow[GD_ROWS];
    T* xs = buf;
    T* ds = buf + GD_ROWS * GD_PAD;

    const i64 p = blockIdx.x, k = blockIdx.y, P = gridDim.x;
    const i64 m0 = min(M, p * rows_per_part), m1 = min(M, m0 + rows_per_part);
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5, warps = GD_THREADS / 32;
    const int TW = (int)((V + 3) / 4), VP = TW * 4, T4 = TW * TW;
    const int G = GD_THREADS / T4;  // >= 1 since T4 <= 256
    const int tid = t % T4, g = t / T4;
    const bool active = g < G;
    const int v0 = (tid / TW) * 4, w0 = (tid % TW) * 4;

    T acc[16];
#pragma unroll
    for (int e = 0; e < 16; ++e) acc[e] = T(0);

    for (i64 mb = m0; mb < m1; mb += GD_ROWS) {
        __syncthreads();  // the previous chunk is no longer read
        if (t < GD_ROWS) {
            const i64 m = mb + t;
            xrow[t] = m < m1 ? ((m / CT) * K + k) * CT * V + (m % CT) * V : -1;
        }
        __syncthreads();
        for (int rr = warp; rr < GD_ROWS; rr += warps) {
            const i64 base = xrow[rr], m = mb + rr;
            for (int col = lane; col < VP; col += 32) {
                T xv = T(0), gv = T(0);
                if (base >= 0 && col < V) {
                    xv = x[base + col];
                    gv = dy[m * V + col];
                }
                xs[rr * GD_PAD + col] = xv;
                ds[rr * GD_PAD + col] = gv;
            }
        }
        __syncthreads();
        if (active) {
            for (int rr = g; rr < GD_ROWS; rr += G) {
                T a[4], b[4];
                ga_load4(xs + rr * GD_PAD + v0, a);
                ga_load4(ds + rr * GD_PAD + w0, b);
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i * 4 + j] += a[i] * b[j];
            }
        }
    }
    __syncthreads();  // the tiles are no longer read
    if (active) {
#pragma unroll
        for (int e = 0; e < 16; ++e) buf[t * 16 + e] = acc[e];  // t = g * T4 + tid < 256
    }
    __syncthreads();
    T* out = partial + (k * P + p) * V * V;
    for (i64 e = t; e < V * V; e += GD_THREADS) {
        const int v = (int)(e / V), w = (int)(e % V);
        const int ti = (v / 4) * TW + w / 4, te = (v % 4) * 4 + w % 4;
        T s = T(0);
        for (int gg = 0; gg < G; ++gg) s += buf[(gg * T4 + ti) * 16 + te];
        out[e] = s;
    }
}

// da[k,v,w] = sum over p (in order, in f64) of partial[k,p,v,w]; 0 on masked rows and columns.
template <typename T>
__device__ void ga_grad_adj_final(const T* __restrict__ partial, const T* __restrict__ mask, T* __restrict__ da,
                                  i64 K, i64 P, i64 V) {
    const i64 VV = V * V;
    RCMCL_FOR_EACH(e, K * VV) {
        const i64 k = e / VV, vw = e % VV;
        T out = T(0);
        if (ga_on(mask, vw / V) && ga_on(mask, vw % V)) {
            double s = 0.0;
            for (i64 p = 0; p < P; ++p) s += (double)partial[(k * P + p) * VV + vw];
            out = (T)s;
        }
        da[e] = out;
    }
}

extern "C" __global__ void __launch_bounds__(GD_THREADS)
    ga_grad_adj_f32(const float* x, const float* dy, float* partial, i64 K, i64 CT, i64 V, i64 M, i64 rpp) {
    ga_grad_adj<float>(x, dy, partial, K, CT, V, M, rpp);
}
extern "C" __global__ void __launch_bounds__(GD_THREADS)
    ga_grad_adj_f64(const double* x, const double* dy, double* partial, i64 K, i64 CT, i64 V, i64 M, i64 rpp) {
    ga_grad_adj<double>(x, dy, partial, K, CT, V, M, rpp);
}
extern "C" __global__ void ga_grad_adj_final_f32(const float* partial, const float* mask, float* da, i64 K, i64 P,
                                                 i64 V) {
    ga_grad_adj_final<float>(partial, mask, da, K, P, V);
}
extern "C" __global__ void ga_grad_adj_final_f64(const double* partial, const double* mask, double* da, i64 K,
                                                 i64 P, i64 V) {
    ga_grad_adj_final<double>(partial, mask, da, K, P, V);
}
