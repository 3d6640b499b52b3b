// Counter-based random numbers: dropout masks and seeded uniform / normal fills.
//
// Element `i` depends only on (seed, i) through `rcmcl_uniform` (the prelude), which is the CPU's
// hash bit for bit, so a GPU tensor equals the CPU tensor made from the same seed. The arithmetic
// after the hash uses `__dmul_rn` / `__dadd_rn`: the compiler never fuses those into an FMA, so
// each step rounds exactly as the CPU's separate multiply and add.

// Inverted dropout: an element is kept when its uniform number is >= p (compared in double, as
// the CPU), and then scaled by `scale` = 1 / (1 - p) (0 when p == 1; computed by the engine in
// the element type, as the CPU). The mask holds the multiplier, for the backward pass.
template <typename T>
__device__ __forceinline__ void dropout_body(const T* __restrict__ x, T* __restrict__ out, T* __restrict__ mask,
                                             i64 n, u64 seed, double p, T scale) {
    RCMCL_FOR_EACH(i, n) {
        const bool keep = rcmcl_uniform(seed, (u64)i) >= p;
        // A dropped element is 0 even where x is infinite or NaN, as on the CPU.
        out[i] = keep ? x[i] * scale : T(0);
        mask[i] = keep ? scale : T(0);
    }
}

extern "C" __global__ void dropout_f32(const float* x, float* out, float* mask, i64 n, u64 seed, double p,
                                       float scale) {
    dropout_body(x, out, mask, n, seed, p, scale);
}
extern "C" __global__ void dropout_f64(const double* x, double* out, double* mask, i64 n, u64 seed, double p,
                                       double scale) {
    dropout_body(x, out, mask, n, seed, p, scale);
}

// Uniform fill: element i = low + (high - low) * u(seed, i), in double, then rounded to T.
template <typename T>
__device__ __forceinline__ void rand_uniform_body(T* __restrict__ out, i64 n, u64 seed, double low, double high) {
    const double range = high - low;
    RCMCL_FOR_EACH(i, n) {
        out[i] = (T)__dadd_rn(low, __dmul_rn(range, rcmcl_uniform(seed, (u64)i)));
    }
}

extern "C" __global__ void rand_uniform_f32(float* out, i64 n, u64 seed, double low, double high) {
    rand_uniform_body(out, n, seed, low, high);
}
extern "C" __global__ void rand_uniform_f64(double* out, i64 n, u64 seed, double low, double high) {
    rand_uniform_body(out, n, seed, low, high);
}

// Normal fill by Box-Muller: element i = mean + std * sqrt(-2 log(1 - u(seed, 2i)))
// * cos(2 pi u(seed, 2i + 1)), in double (1 - u keeps the logarithm finite), then rounded to T.
// `log` and `cos` may differ from the host's libm in the last bit of the double, so f64 fills
// agree with the CPU to about 1e-15 relative (f32 fills round to the same value but in
// vanishingly rare ties); the uniform fill is exact.
template <typename T>
__device__ __forceinline__ void rand_normal_body(T* __restrict__ out, i64 n, u64 seed, double mean, double sd) {
    const double two_pi = 6.283185307179586476925286766559;
    RCMCL_FOR_EACH(i, n) {
        const double u1 = 1.0 - rcmcl_uniform(seed, 2ull * (u64)i);
        const double u2 = rcmcl_uniform(seed, 2ull * (u64)i + 1ull);
        const double r = sqrt(__dmul_rn(-2.0, log(u1)));
        const double c = cos(__dmul_rn(two_pi, u2));
        out[i] = (T)__dadd_rn(mean, __dmul_rn(__dmul_rn(sd, r), c));
    }
}

extern "C" __global__ void rand_normal_f32(float* out, i64 n, u64 seed, double mean, double sd) {
    rand_normal_body(out, n, seed, mean, sd);
}
extern "C" __global__ void rand_normal_f64(double* out, i64 n, u64 seed, double mean, double sd) {
    rand_normal_body(out, n, seed, mean, sd);
}
