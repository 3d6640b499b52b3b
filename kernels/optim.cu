// Fused optimizer updates (AdamW, SGD) and the sum of squares behind gradient-norm clipping.
//
// Multi-tensor launches: one launch updates (or reads) every tensor of a group through a device
// table of `TensorEntry` (the engine uploads it once and re-uploads it only when an entry
// changes). Each tensor is cut into chunks of OPTIM_CHUNK elements; block b handles one chunk of
// the tensor whose [block_start, block_start + blocks) range holds b, found by binary search in
// the table (entries are in order of block_start, the first at 0).
//
// The update arithmetic is the CPU reference's, step by step, with the `_rn` intrinsics: the
// compiler never fuses them into an FMA and `__fdiv_rn` / `__fsqrt_rn` are correctly rounded, so
// every element is updated bit for bit as on the CPU.
//
// Kernel names, argument orders and the table layout must match `engine/src/optim/cuda.rs`.

#define OPTIM_CHUNK 4096

// One tensor of a multi-tensor launch: eight 64-bit words (the engine writes them as i64).
struct TensorEntry {
    u64 p;        // parameter (or, for the sum of squares, the tensor read)
    u64 g;        // gradient
    u64 s1;       // state: AdamW's m, SGD's momentum buffer (0 when there is none)
    u64 s2;       // state: AdamW's v
    i64 n;        // elements
    i64 block_start;
    i64 flags;    // SGD: bit 0 = the momentum buffer starts this step (it becomes d)
    i64 reserved;
};

#define OPTIM_FIRST_STEP 1

// The entry whose block range holds block b (entries sorted by block_start, entry 0 at 0).
__device__ __forceinline__ const TensorEntry& entry_of(const TensorEntry* table, i64 entries, i64 b) {
    i64 lo = 0, hi = entries - 1;
    while (lo < hi) {
        const i64 mid = (lo + hi + 1) >> 1;
        if (table[mid].block_start <= b) lo = mid;
        else hi = mid - 1;
    }
    return table[lo];
}

__device__ __forceinline__ float rn_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double rn_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float rn_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double rn_sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float rn_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double rn_mul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float rn_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double rn_div(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float rn_sqrt(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double rn_sqrt(double a) { return __dsqrt_rn(a); }

// The chunk [begin, end) of this block's tensor.
__device__ __forceinline__ void chunk_of(const TensorEntry& e, i64 b, i64* begin, i64* end) {
    *begin = (b - e.block_start) * OPTIM_CHUNK;
    *end = min(e.n, *begin + OPTIM_CHUNK);
}

// ----- the element loop of the updates ----------------------------------------------------------

// 16 bytes of elements: 4 floats or 2 doubles.
template <typename T> struct Pack;
template <> struct Pack<float> {
    typedef float4 V;
    static constexpr int K = 4;
};
template <> struct Pack<double> {
    typedef double2 V;
    static constexpr int K = 2;
};

__device__ __forceinline__ bool aligned16(const void* p) { return ((u64)p & 15ull) == 0; }

// Calls f(p[i], g[i], a[i], b[i]) (references that f may update) for i in [begin, end), by
// 16-byte packs when every buffer of the chunk is 16-byte aligned (always, for the engine's
// allocations), then element by element for the rest. A null state buffer reads as 0 and is
// not written. Each element's arithmetic is the same on either path.
template <typename T, typename F>
__device__ __forceinline__ void chunk_map(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ a,
                                          T* __restrict__ b, i64 begin, i64 end, F f) {
    typedef typename Pack<T>::V V;
    constexpr int K = Pack<T>::K;
    i64 rest = begin;
    if (aligned16(p + begin) && aligned16(g + begin) && (a == nullptr || aligned16(a + begin)) &&
        (b == nullptr || aligned16(b + begin))) {
        const i64 packs = (end - begin) / K;
        for (i64 k = threadIdx.x; k < packs; k += blockDim.x) {
            const i64 i = begin + k * K;
            V pv = *reinterpret_cast<const V*>(p + i);
            const V gv = *reinterpret_cast<const V*>(g + i);
            V av, bv;
            T* pa = reinterpret_cast<T*>(&pv);
            const T* ga = reinterpret_cast<const T*>(&gv);
            T* aa = reinterpret_cast<T*>(&av);
            T* ba = reinterpret_cast<T*>(&bv);
            if (a != nullptr) av = *reinterpret_cast<const V*>(a + i);
            else for (int j = 0; j < K; ++j) aa[j] = T(0);
            if (b != nullptr) bv = *reinterpret_cast<const V*>(b + i);
            else for (int j = 0; j < K; ++j) ba[j] = T(0);
#pragma unroll
            for (int j = 0; j < K; ++j) f(pa[j], ga[j], aa[j], ba[j]);
            *reinterpret_cast<V*>(p + i) = pv;
            if (a != nullptr) *reinterpret_cast<V*>(a + i) = av;
            if (b != nullptr) *reinterpret_cast<V*>(b + i) = bv;
        }
        rest = begin + packs * K;
    }
    for (i64 i = rest + threadIdx.x; i < end; i += blockDim.x) {
        T pi = p[i];
        T ai = a != nullptr ? a[i] : T(0);
        T bi = b != nullptr ? b[i] : T(0);
        f(pi, g[i], ai, bi);
        p[i] = pi;
        if (a != nullptr) a[i] = ai;
        if (b != nullptr) b[i] = bi;
    }
}

// ----- AdamW ----------------------------------------------------------------------------------

// Per element (the CPU's `adamw_serial`):
//   p *= decay                                     decay = 1 - lr * wd
//   m = lerp(m, g, omb1)                           torch.lerp's two forms, picked by omb1 < 0.5
//   v = v * beta2 + (omb2 * g) * g
//   p -= (step_size * m) / (sqrt(v) / bc2_sqrt + eps)
// `keep1` = 1 - omb1 rounded in T (the CPU's `T::one() - one_minus_beta1`).
template <typename T>
__device__ void adamw_body(const TensorEntry* __restrict__ table, i64 entries, T decay, T omb1, T keep1,
                           int lerp_low, T beta2, T omb2, T step_size, T bc2_sqrt, T eps) {
    const i64 b = blockIdx.x;
    const TensorEntry& e = entry_of(table, entries, b);
    i64 begin, end;
    chunk_of(e, b, &begin, &end);
    chunk_map((T*)e.p, (const T*)e.g, (T*)e.s1, (T*)e.s2, begin, end, [&](T& p, T g, T& m, T& v) {
        p = rn_mul(p, decay);
        m = lerp_low ? rn_add(m, rn_mul(omb1, rn_sub(g, m))) : rn_sub(g, rn_mul(rn_sub(g, m), keep1));
        v = rn_add(rn_mul(v, beta2), rn_mul(rn_mul(omb2, g), g));
        const T denom = rn_add(rn_div(rn_sqrt(v), bc2_sqrt), eps);
        p = rn_sub(p, rn_div(rn_mul(step_size, m), denom));
    });
}

extern "C" __global__ void adamw_f32(const TensorEntry* table, i64 entries, float decay, float omb1, float keep1,
                                     int lerp_low, float beta2, float omb2, float step_size, float bc2_sqrt,
                                     float eps) {
    adamw_body(table, entries, decay, omb1, keep1, lerp_low, beta2, omb2, step_size, bc2_sqrt, eps);
}
extern "C" __global__ void adamw_f64(const TensorEntry* table, i64 entries, double decay, double omb1, double keep1,
                                     int lerp_low, double beta2, double omb2, double step_size, double bc2_sqrt,
                                     double eps) {
    adamw_body(table, entries, decay, omb1, keep1, lerp_low, beta2, omb2, step_size, bc2_sqrt, eps);
}

// ----- SGD ------------------------------------------------------------------------------------

// Per element (the CPU's `sgd_serial`):
//   d = decay ? g + wd * p : g
//   without a buffer (s1 == 0): p -= lr * d
//   with one:  buf = first ? d : momentum * buf + keep * d      keep = 1 - dampening
//              d = nesterov ? d + momentum * buf : buf;  p -= lr * d
template <typename T>
__device__ void sgd_body(const TensorEntry* __restrict__ table, i64 entries, T lr, T wd, int decay, T momentum,
                         T keep, int nesterov) {
    const i64 b = blockIdx.x;
    const TensorEntry& e = entry_of(table, entries, b);
    const bool has_buf = e.s1 != 0;
    const bool first = (e.flags & OPTIM_FIRST_STEP) != 0;
    i64 begin, end;
    chunk_of(e, b, &begin, &end);
    chunk_map((T*)e.p, (const T*)e.g, (T*)e.s1, (T*)nullptr, begin, end, [&](T& p, T g, T& buf, T&) {
        T d = decay ? rn_add(g, rn_mul(wd, p)) : g;
        if (has_buf) {
            buf = first ? d : rn_add(rn_mul(momentum, buf), rn_mul(keep, d));
            d = nesterov ? rn_add(d, rn_mul(momentum, buf)) : buf;
        }
        p = rn_sub(p, rn_mul(lr, d));
    });
}

extern "C" __global__ void sgd_f32(const TensorEntry* table, i64 entries, float lr, float wd, int decay,
                                   float momentum, float keep, int nesterov) {
    sgd_body(table, entries, lr, wd, decay, momentum, keep, nesterov);
}
extern "C" __global__ void sgd_f64(const TensorEntry* table, i64 entries, double lr, double wd, int decay,
                                   double momentum, double keep, int nesterov) {
    sgd_body(table, entries, lr, wd, decay, momentum, keep, nesterov);
}

// ----- sum of squares (gradient-norm clipping) ------------------------------------------------

// partial[b] = the sum over block b's chunk of x^2, in double (x = entry.p).
template <typename T>
__device__ void sumsq_body(const TensorEntry* __restrict__ table, i64 entries, double* __restrict__ partial) {
    __shared__ double scratch[32];
    const i64 b = blockIdx.x;
    const TensorEntry& e = entry_of(table, entries, b);
    const T* __restrict__ x = (const T*)e.p;
    i64 begin, end;
    chunk_of(e, b, &begin, &end);
    double acc = 0.0;
    for (i64 i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const double xi = (double)x[i];
        acc += xi * xi;
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) partial[b] = acc;
}

extern "C" __global__ void sumsq_f32(const TensorEntry* table, i64 entries, double* partial) {
    sumsq_body<float>(table, entries, partial);
}
extern "C" __global__ void sumsq_f64(const TensorEntry* table, i64 entries, double* partial) {
    sumsq_body<double>(table, entries, partial);
}

// out[0] = the sum of partial[0..n), by one block: thread t adds t, t + blockDim.x, ... in order,
// then the block's fixed reduction tree.
extern "C" __global__ void sum_partials(const double* partial, i64 n, double* out) {
    __shared__ double scratch[32];
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) out[0] = acc;
}
