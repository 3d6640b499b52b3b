//! Elementary functions written so that loops over them vectorise.
//!
//! The standard library's `f32::exp` is a call into libm per element, which keeps every loop that
//! uses it (exp, softmax, sigmoid, softplus, cross-entropy) scalar. `exp_f32` is the classic
//! range reduction plus polynomial (as in Cephes' `expf`): `x = n ln2 + r` with |r| <= ln2 / 2,
//! `exp(r)` by a degree-6 polynomial, and `2^n` built from exponent bits, in two factors so that
//! results in the subnormal range come out right. Only comparisons, multiplies, adds and integer
//! bit operations, all of which SSE2 has: no branches, no calls. Error: under 1 ulp of the exact
//! result over the whole f32 range (0.97 ulp at worst in the sweep of tests/math.rs). f64 keeps libm's `exp`, since f64
//! is the reference the gradient checks rely on.

/// `exp(x)` for f32, vectorisable; NaN gives NaN, `+inf` gives `+inf`, `-inf` gives 0.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer (SSE2 has no roundps).
    const ROUND: f32 = 12_582_912.0;
    // Beyond these, exp is 0 or infinite in f32; clamping keeps the exponent arithmetic in range.
    let clamped = x.clamp(-104.0, 89.0);
    let n = (clamped * LOG2E + ROUND) - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // 2^n as two powers of two, each a normal float even when 2^n itself is subnormal.
    // NaN became n = NaN above; `as i32` maps it to 0 and the NaN survives through `e_r`.
    let n = n as i32;
    let half = n >> 1;
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let y = e_r * pow2(half) * pow2(n - half);
    // `clamped` lost +inf; put it back (and NaN passes through untouched).
    if x > 89.0 {
        f32::INFINITY
    } else {
        y
    }
}
