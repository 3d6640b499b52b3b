// Elementwise maps: unary ops and their fused backward, binary ops with broadcasting, `where`.
//
// Each family of ops is one `extern "C"` kernel per dtype taking an op code. The code is the same
// for every thread of a launch, so the kernel switches on it once, outside the element loop, into
// a loop specialised for that op (a template instantiation per op): no per-element branching.
//
// Same-shape maps are memory-bound, so they read and write 16 bytes at a time (float4 / double2)
// when every pointer is 16-byte aligned, with a scalar loop for the tail; no index arithmetic
// beyond the grid-stride counter. Broadcasting maps take up to 8 (coalesced) output dimensions and
// each input's strides (0 along broadcast dimensions) as kernel arguments.
//
// Op codes must match `ops/elementwise/cuda.rs`.

// ----- math wrappers: one name for both precisions (NVRTC has no <cmath> overloads) -----------

__device__ __forceinline__ float m_exp(float x) { return expf(x); }
__device__ __forceinline__ double m_exp(double x) { return exp(x); }
__device__ __forceinline__ float m_log(float x) { return logf(x); }
__device__ __forceinline__ double m_log(double x) { return log(x); }
__device__ __forceinline__ float m_log1p(float x) { return log1pf(x); }
__device__ __forceinline__ double m_log1p(double x) { return log1p(x); }
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float m_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double m_abs(double x) { return fabs(x); }
__device__ __forceinline__ float m_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double m_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float m_pow(float x, float p) { return powf(x, p); }
__device__ __forceinline__ double m_pow(double x, double p) { return pow(x, p); }
__device__ __forceinline__ float m_erfc(float x) { return erfcf(x); }
__device__ __forceinline__ double m_erfc(double x) { return erfc(x); }
// max(x, 0) as Rust's `Float::max`: a NaN operand gives the other one.
__device__ __forceinline__ float m_fmax(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double m_fmax(double a, double b) { return fmax(a, b); }

// Phi(x), the standard normal CDF, as erfc(-x / sqrt 2) / 2: unlike (1 + erf) / 2 it keeps full
// relative precision in the left tail (the CPU computes it in f64).
template <typename T> __device__ __forceinline__ T normal_cdf(T x) {
    return T(0.5) * m_erfc(-x * T(0.70710678118654752440));
}

// Two branches so exp never overflows (as the CPU).
template <typename T> __device__ __forceinline__ T sigmoid(T x) {
    if (x >= T(0)) return T(1) / (T(1) + m_exp(-x));
    const T e = m_exp(x);
    return e / (T(1) + e);
}

// ----- unary ops ------------------------------------------------------------------------------

enum UnaryCode {
    U_NEG = 0,
    U_EXP = 1,
    U_LOG = 2,
    U_SQRT = 3,
    U_ABS = 4,
    U_RELU = 5,
    U_LEAKY_RELU = 6,  // p0 = negative slope
    U_GELU = 7,
    U_SIGMOID = 8,
    U_TANH = 9,
    U_SOFTPLUS = 10,
    U_POWF = 11,        // p0 = exponent
    U_ADD_SCALAR = 12,  // p0 = the scalar
    U_MUL_SCALAR = 13,  // p0 = the scalar
    U_CLAMP = 14,       // p0 = lo, p1 = hi
};

// Calls M(code) for every unary op code (for the switch that picks the specialised loop).
#define RCMCL_UNARY_CODES(M)                                                                     \
    M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14)

// f(x), with the semantics of `UnaryOp::apply` on the CPU (NaN passes through relu and clamp).
template <int OP, typename T> __device__ __forceinline__ T unary_apply(T x, T p0, T p1) {
    if constexpr (OP == U_NEG) return -x;
    else if constexpr (OP == U_EXP) return m_exp(x);
    else if constexpr (OP == U_LOG) return m_log(x);
    else if constexpr (OP == U_SQRT) return m_sqrt(x);
    else if constexpr (OP == U_ABS) return m_abs(x);
    else if constexpr (OP == U_RELU) return x < T(0) ? T(0) : x;
    else if constexpr (OP == U_LEAKY_RELU) return x > T(0) ? x : x * p0;
    else if constexpr (OP == U_GELU) return x * normal_cdf(x);
    else if constexpr (OP == U_SIGMOID) return sigmoid(x);
    else if constexpr (OP == U_TANH) return m_tanh(x);
    else if constexpr (OP == U_SOFTPLUS) return m_fmax(x, T(0)) + m_log1p(m_exp(-m_abs(x)));
    else if constexpr (OP == U_POWF) return m_pow(x, p0);
    else if constexpr (OP == U_ADD_SCALAR) return x + p0;
    else if constexpr (OP == U_MUL_SCALAR) return x * p0;
    else return x < p0 ? p0 : (x > p1 ? p1 : x);  // U_CLAMP
}

// f'(x) given y = f(x), with the rules of `UnaryOp::derivative` on the CPU.
template <int OP, typename T> __device__ __forceinline__ T unary_derivative(T x, T y, T p0, T p1) {
    if constexpr (OP == U_NEG) return T(-1);
    else if constexpr (OP == U_EXP) return y;
    else if constexpr (OP == U_LOG) return T(1) / x;
    else if constexpr (OP == U_SQRT) return T(0.5) / y;
    else if constexpr (OP == U_ABS) return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    else if constexpr (OP == U_RELU) return x > T(0) ? T(1) : T(0);
    else if constexpr (OP == U_LEAKY_RELU) return x > T(0) ? T(1) : p0;
    else if constexpr (OP == U_GELU) {
        const T pdf = m_exp(-(x * x) * T(0.5)) * T(0.39894228040143267794);  // 1 / sqrt(2 pi)
        return normal_cdf(x) + x * pdf;
    } else if constexpr (OP == U_SIGMOID) return y * (T(1) - y);
    else if constexpr (OP == U_TANH) return T(1) - y * y;
    else if constexpr (OP == U_SOFTPLUS) return sigmoid(x);
    // p1 = p - 1; the engine sends p == 0 as MulScalar(0), whose rule is the CPU's (g * 0).
    else if constexpr (OP == U_POWF) return p0 * m_pow(x, p1);
    else if constexpr (OP == U_ADD_SCALAR) return T(1);
    else if constexpr (OP == U_MUL_SCALAR) return p0;
    else return (x >= p0 && x <= p1) ? T(1) : T(0);  // U_CLAMP: the closed interval passes
}

// ----- vectorised same-shape maps -------------------------------------------------------------

// 16 bytes of elements, aligned so that a load or store is one 128-bit access.
template <typename T> struct alignas(16) Pack {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<u64>(p) & 15) == 0; }

__device__ __forceinline__ i64 thread_index() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 thread_count() { return (i64)blockDim.x * gridDim.x; }

// out[i] = f(x[i]) for i in [0, n).
template <typename T, typename F>
__device__ __forceinline__ void map1(const T* __restrict__ x, T* __restrict__ out, i64 n, F f) {
    constexpr int W = Pack<T>::N;
    const i64 first = thread_index(), step = thread_count();
    i64 done = 0;
    if (aligned16(x) && aligned16(out)) {
        const i64 packs = n / W;
        const Pack<T>* xp = reinterpret_cast<const Pack<T>*>(x);
        Pack<T>* op = reinterpret_cast<Pack<T>*>(out);
        for (i64 p = first; p < packs; p += step) {
            const Pack<T> a = xp[p];
            Pack<T> r;
#pragma unroll
            for (int k = 0; k < W; ++k) r.v[k] = f(a.v[k]);
            op[p] = r;
        }
        done = packs * W;
    }
    for (i64 i = done + first; i < n; i += step) out[i] = f(x[i]);
}

// out[i] = f(a[i], b[i]).
template <typename T, typename F>
__device__ __forceinline__ void map2(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                                     i64 n, F f) {
    constexpr int W = Pack<T>::N;
    const i64 first = thread_index(), step = thread_count();
    i64 done = 0;
    if (aligned16(a) && aligned16(b) && aligned16(out)) {
        const i64 packs = n / W;
        const Pack<T>* ap = reinterpret_cast<const Pack<T>*>(a);
        const Pack<T>* bp = reinterpret_cast<const Pack<T>*>(b);
        Pack<T>* op = reinterpret_cast<Pack<T>*>(out);
        for (i64 p = first; p < packs; p += step) {
            const Pack<T> u = ap[p], v = bp[p];
            Pack<T> r;
#pragma unroll
            for (int k = 0; k < W; ++k) r.v[k] = f(u.v[k], v.v[k]);
            op[p] = r;
        }
        done = packs * W;
    }
    for (i64 i = done + first; i < n; i += step) out[i] = f(a[i], b[i]);
}

// out[i] = f(a[i], b[i], c[i]).
template <typename T, typename F>
__device__ __forceinline__ void map3(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
                                     T* __restrict__ out, i64 n, F f) {
    constexpr int W = Pack<T>::N;
    const i64 first = thread_index(), step = thread_count();
    i64 done = 0;
    if (aligned16(a) && aligned16(b) && aligned16(c) && aligned16(out)) {
        const i64 packs = n / W;
        const Pack<T>* ap = reinterpret_cast<const Pack<T>*>(a);
        const Pack<T>* bp = reinterpret_cast<const Pack<T>*>(b);
        const Pack<T>* cp = reinterpret_cast<const Pack<T>*>(c);
        Pack<T>* op = reinterpret_cast<Pack<T>*>(out);
        for (i64 p = first; p < packs; p += step) {
            const Pack<T> u = ap[p], v = bp[p], w = cp[p];
            Pack<T> r;
#pragma unroll
            for (int k = 0; k < W; ++k) r.v[k] = f(u.v[k], v.v[k], w.v[k]);
            op[p] = r;
        }
        done = packs * W;
    }
    for (i64 i = done + first; i < n; i += step) out[i] = f(a[i], b[i], c[i]);
}

// ----- unary kernels --------------------------------------------------------------------------

template <int OP, typename T> __device__ void unary_loop(const T* x, T* out, i64 n, T p0, T p1) {
    map1(x, out, n, [=](T v) { return unary_apply<OP>(v, p0, p1); });
}

template <typename T> __device__ void unary_body(const T* x, T* out, i64 n, int op, double p0, double p1) {
    switch (op) {
#define RCMCL_CASE(C)                                                                            \
    case C: unary_loop<C, T>(x, out, n, (T)p0, (T)p1); break;
        RCMCL_UNARY_CODES(RCMCL_CASE)
#undef RCMCL_CASE
    }
}

// g * f'(x, y): the fused backward of a unary op.
template <int OP, typename T>
__device__ void unary_grad_loop(const T* x, const T* y, const T* g, T* out, i64 n, T p0, T p1) {
    map3(x, y, g, out, n, [=](T xv, T yv, T gv) { return gv * unary_derivative<OP>(xv, yv, p0, p1); });
}

template <typename T>
__device__ void unary_grad_body(const T* x, const T* y, const T* g, T* out, i64 n, int op, double p0,
                                double p1) {
    switch (op) {
#define RCMCL_CASE(C)                                                                            \
    case C: unary_grad_loop<C, T>(x, y, g, out, n, (T)p0, (T)p1); break;
        RCMCL_UNARY_CODES(RCMCL_CASE)
#undef RCMCL_CASE
    }
}

extern "C" __global__ void unary_f32(const float* x, float* out, i64 n, int op, double p0, double p1) {
    unary_body(x, out, n, op, p0, p1);
}
extern "C" __global__ void unary_f64(const double* x, double* out, i64 n, int op, double p0, double p1) {
    unary_body(x, out, n, op, p0, p1);
}
extern "C" __global__ void unary_grad_f32(const float* x, const float* y, const float* g, float* out, i64 n,
                                          int op, double p0, double p1) {
    unary_grad_body(x, y, g, out, n, op, p0, p1);
}
extern "C" __global__ void unary_grad_f64(const double* x, const double* y, const double* g, double* out,
                                          i64 n, int op, double p0, double p1) {
    unary_grad_body(x, y, g, out, n, op, p0, p1);
}

// ----- binary ops -----------------------------------------------------------------------------

enum BinaryCode {
    B_ADD = 0,
    B_SUB = 1,
    B_MUL = 2,
    B_DIV = 3,
    B_MAXIMUM = 4,
    B_MINIMUM = 5,
    B_GT = 6,
    B_GE = 7,
    B_LT = 8,
    B_LE = 9,
    B_EQ = 10,
    B_NE = 11,
};

#define RCMCL_BINARY_CODES(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

// `BinaryOp::apply`: maximum/minimum propagate NaN, comparisons give 1 or 0.
template <int OP, typename T> __device__ __forceinline__ T binary_apply(T a, T b) {
    if constexpr (OP == B_ADD) return a + b;
    else if constexpr (OP == B_SUB) return a - b;
    else if constexpr (OP == B_MUL) return a * b;
    else if constexpr (OP == B_DIV) return a / b;
    else if constexpr (OP == B_MAXIMUM) return rcmcl_max(a, b);
    else if constexpr (OP == B_MINIMUM) return rcmcl_min(a, b);
    else if constexpr (OP == B_GT) return a > b ? T(1) : T(0);
    else if constexpr (OP == B_GE) return a >= b ? T(1) : T(0);
    else if constexpr (OP == B_LT) return a < b ? T(1) : T(0);
    else if constexpr (OP == B_LE) return a <= b ? T(1) : T(0);
    else if constexpr (OP == B_EQ) return a == b ? T(1) : T(0);
    else return a != b ? T(1) : T(0);  // B_NE
}

template <int OP, typename T> __device__ void binary_loop(const T* a, const T* b, T* out, i64 n) {
    map2(a, b, out, n, [](T u, T v) { return binary_apply<OP>(u, v); });
}

template <typename T> __device__ void binary_body(const T* a, const T* b, T* out, i64 n, int op) {
    switch (op) {
#define RCMCL_CASE(C)                                                                            \
    case C: binary_loop<C, T>(a, b, out, n); break;
        RCMCL_BINARY_CODES(RCMCL_CASE)
#undef RCMCL_CASE
    }
}

// Same-shape operands.
extern "C" __global__ void binary_f32(const float* a, const float* b, float* out, i64 n, int op) {
    binary_body(a, b, out, n, op);
}
extern "C" __global__ void binary_f64(const double* a, const double* b, double* out, i64 n, int op) {
    binary_body(a, b, out, n, op);
}

// ----- broadcasting ---------------------------------------------------------------------------

#define RCMCL_MAX_DIMS 8

// The output's dimensions (outermost first, `rank` of them, coalesced by the engine) and the
// element strides of up to three inputs over them (0 along a broadcast dimension).
template <int NIN> struct Bcast {
    int rank;
    i64 dim[RCMCL_MAX_DIMS];
    i64 stride[NIN][RCMCL_MAX_DIMS];
};

// Kernel parameter lists of 8 values; unused trailing entries are ignored.
#define RCMCL_ARGS8(p) i64 p##0, i64 p##1, i64 p##2, i64 p##3, i64 p##4, i64 p##5, i64 p##6, i64 p##7
#define RCMCL_SET8(dst, p)                                                                       \
    dst[0] = p##0; dst[1] = p##1; dst[2] = p##2; dst[3] = p##3;                                  \
    dst[4] = p##4; dst[5] = p##5; dst[6] = p##6; dst[7] = p##7;

// The offset in each input of output element `i`. `I` is u32 when every index fits (32-bit
// division is several times cheaper), else u64. The outermost dimension needs no division (what
// is left of `i` is its coordinate), so a rank-1 layout (a scalar against a tensor) costs one
// multiply per input and a bias over rows ([N, M] with [M]) one division.
template <typename I, int NIN>
__device__ __forceinline__ void bcast_offsets(I i, const Bcast<NIN>& b, I (&off)[NIN]) {
#pragma unroll
    for (int j = 0; j < NIN; ++j) off[j] = 0;
#pragma unroll
    for (int k = RCMCL_MAX_DIMS - 1; k >= 1; --k) {
        if (k < b.rank) {
            const I d = (I)b.dim[k];
            const I q = i / d;
            const I c = i - q * d;
            i = q;
#pragma unroll
            for (int j = 0; j < NIN; ++j) off[j] += c * (I)b.stride[j][k];
        }
    }
#pragma unroll
    for (int j = 0; j < NIN; ++j) off[j] += i * (I)b.stride[j][0];
}

template <int OP, typename I, typename T>
__device__ void binary_bcast_loop(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, i64 n,
                                  const Bcast<2>& s) {
    RCMCL_FOR_EACH(i, n) {
        I off[2];
        bcast_offsets<I, 2>((I)i, s, off);
        out[i] = binary_apply<OP>(a[off[0]], b[off[1]]);
    }
}

template <typename T>
__device__ void binary_bcast_body(const T* a, const T* b, T* out, i64 n, int op, const Bcast<2>& s) {
    const bool narrow = n <= 0xffffffffll;
    switch (op) {
#define RCMCL_CASE(C)                                                                            \
    case C:                                                                                      \
        if (narrow) binary_bcast_loop<C, u32>(a, b, out, n, s);                                  \
        else binary_bcast_loop<C, u64>(a, b, out, n, s);                                         \
        break;
        RCMCL_BINARY_CODES(RCMCL_CASE)
#undef RCMCL_CASE
    }
}

#define RCMCL_BINARY_BCAST(T, NAME)                                                              \
    extern "C" __global__ void NAME(const T* a, const T* b, T* out, i64 n, int op, int rank,       \
                                    RCMCL_ARGS8(d), RCMCL_ARGS8(sa), RCMCL_ARGS8(sb)) {          \
        Bcast<2> s;                                                                              \
        s.rank = rank;                                                                           \
        RCMCL_SET8(s.dim, d)                                                                     \
        RCMCL_SET8(s.stride[0], sa)                                                              \
        RCMCL_SET8(s.stride[1], sb)                                                              \
        binary_bcast_body(a, b, out, n, op, s);                                                  \
    }

RCMCL_BINARY_BCAST(float, binary_bcast_f32)
RCMCL_BINARY_BCAST(double, binary_bcast_f64)

// ----- where ----------------------------------------------------------------------------------

// `cond != 0 ? a : b` (a NaN condition counts as true, as on the CPU).
template <typename T> __device__ __forceinline__ T select_value(T c, T a, T b) { return c != T(0) ? a : b; }

template <typename T> __device__ void where_body(const T* c, const T* a, const T* b, T* out, i64 n) {
    map3(c, a, b, out, n, [](T cv, T av, T bv) { return select_value(cv, av, bv); });
}

extern "C" __global__ void where_f32(const float* c, const float* a, const float* b, float* out, i64 n) {
    where_body(c, a, b, out, n);
}
extern "C" __global__ void where_f64(const double* c, const double* a, const double* b, double* out, i64 n) {
    where_body(c, a, b, out, n);
}

template <typename I, typename T>
__device__ void where_bcast_loop(const T* __restrict__ c, const T* __restrict__ a, const T* __restrict__ b,
                                 T* __restrict__ out, i64 n, const Bcast<3>& s) {
    RCMCL_FOR_EACH(i, n) {
        I off[3];
        bcast_offsets<I, 3>((I)i, s, off);
        out[i] = select_value(c[off[0]], a[off[1]], b[off[2]]);
    }
}

#define RCMCL_WHERE_BCAST(T, NAME)                                                               \
    extern "C" __global__ void NAME(const T* c, const T* a, const T* b, T* out, i64 n, int rank,   \
                                    RCMCL_ARGS8(d), RCMCL_ARGS8(sc), RCMCL_ARGS8(sa),            \
                                    RCMCL_ARGS8(sb)) {                                           \
        Bcast<3> s;                                                                              \
        s.rank = rank;                                                                           \
        RCMCL_SET8(s.dim, d)                                                                     \
        RCMCL_SET8(s.stride[0], sc)                                                              \
        RCMCL_SET8(s.stride[1], sa)                                                              \
        RCMCL_SET8(s.stride[2], sb)                                                              \
        if (n <= 0xffffffffll) where_bcast_loop<u32>(c, a, b, out, n, s);                        \
        else where_bcast_loop<u64>(c, a, b, out, n, s);                                          \
    }

RCMCL_WHERE_BCAST(float, where_bcast_f32)
RCMCL_WHERE_BCAST(double, where_bcast_f64)
