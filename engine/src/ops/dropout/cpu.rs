//! Reference kernel for inverted dropout. Whether element `i` is kept is a pure function of
//! `(seed, i)` (see [`uniform`]), so masks are reproducible, chunks can be generated in any order
//! on any number of threads, and a GPU kernel reproduces the CPU mask bit for bit.

use crate::ops::PARALLEL_THRESHOLD;
use crate::Float;
use rayon::prelude::*;

/// The SplitMix64 increment (2^64 / golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (Stafford's mix 13): a bijection of u64 with full avalanche.
#[inline(always)]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) for element `index` under `seed`: the `index`-th output of a
/// SplitMix64 stream whose starting state is the mixed seed, reduced to its top 53 bits.
/// Mixing the seed first makes the streams of nearby seeds (0, 1, 2, ...) unrelated.
#[inline(always)]
pub fn uniform(seed: u64, index: u64) -> f64 {
    let key = mix64(seed.wrapping_add(GOLDEN));
    let bits = mix64(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)));
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Elements per parallel task.
const CHUNK: usize = 8192;

/// `(x * mask, mask)` where `mask[i]` is `1 / (1 - p)` for kept elements (`uniform >= p`) and 0
/// for dropped ones. `p == 1` drops everything.
pub fn dropout<T: Float>(x: &[T], seed: u64, p: f64) -> (Vec<T>, Vec<T>) {
    let scale = if p < 1.0 {
        T::of(1.0 / (1.0 - p))
    } else {
        T::zero()
    };
    let mut out = crate::buffer_cache::alloc_zeroed::<T>(x.len());
    let mut mask = crate::buffer_cache::alloc_zeroed::<T>(x.len());
    let kernel = |c: usize, o: &mut [T], m: &mut [T]| {
        let first = c * CHUNK;
        let x = &x[first..first + o.len()];
        for (j, ((o, m), &x)) in o.iter_mut().zip(m.iter_mut()).zip(x).enumerate() {
            if uniform(seed, (first + j) as u64) >= p {
                *m = scale;
                *o = x * scale;
            }
        }
    };
    if x.len() >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .zip(mask.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (o, m))| kernel(c, o, m));
    } else {
        out.chunks_mut(CHUNK)
            .zip(mask.chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (o, m))| kernel(c, o, m));
    }
    (out, mask)
}

/// `out[i] = sample(i)` rounded to `T`, for `i` in `0..n`, in parallel chunks for large fills.
/// Every element is a pure function of its index, so the split cannot change the values.
pub fn fill<T: Float>(n: usize, sample: impl Fn(u64) -> f64 + Sync) -> Vec<T> {
    let mut out = crate::buffer_cache::alloc_for_overwrite::<T>(n);
    let kernel = |c: usize, o: &mut [T]| {
        let first = c * CHUNK;
        for (j, o) in o.iter_mut().enumerate() {
            *o = T::of(sample((first + j) as u64));
        }
    };
    if n >= PARALLEL_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| kernel(c, o));
    } else {
        out.chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| kernel(c, o));
    }
    out
}
