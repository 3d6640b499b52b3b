// Fills and dtype conversions: the kernels every storage needs (constants, zeros_like, to_dtype).

template <typename T> __device__ __forceinline__ void fill_body(T* out, T value, i64 n) {
    RCMCL_FOR_EACH(i, n) out[i] = value;
}

extern "C" __global__ void fill_f32(float* out, float value, i64 n) { fill_body(out, value, n); }
extern "C" __global__ void fill_f64(double* out, double value, i64 n) { fill_body(out, value, n); }
extern "C" __global__ void fill_i64(i64* out, i64 value, i64 n) { fill_body(out, value, n); }

// C++ conversions: float to integer truncates toward zero, as Rust's `as` and the CPU reference.
// (Out-of-range and NaN floats are undefined in C++ but saturate in Rust; the hardware cvt.rzi
// saturates too and maps NaN to 0, matching Rust.)
template <typename S, typename D> __device__ __forceinline__ void cast_body(const S* in, D* out, i64 n) {
    RCMCL_FOR_EACH(i, n) out[i] = (D)in[i];
}

#define RCMCL_CAST(S, SN, D, DN)                                                                 \
    extern "C" __global__ void cast_##SN##_##DN(const S* in, D* out, i64 n) { cast_body(in, out, n); }

RCMCL_CAST(float, f32, double, f64)
RCMCL_CAST(float, f32, i64, i64)
RCMCL_CAST(double, f64, float, f32)
RCMCL_CAST(double, f64, i64, i64)
RCMCL_CAST(i64, i64, float, f32)
RCMCL_CAST(i64, i64, double, f64)
