//! Seeded randomness for the data pipeline.
//!
//! Every random choice the loader makes comes from a ChaCha8 generator keyed by
//! (run seed, epoch) and put on a stream named by (sample, view, purpose). A sample's
//! augmentations therefore depend on nothing but those numbers: not on the thread that builds
//! it, the batch it lands in, or what was drawn for other samples.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

/// What a generator is used for; each purpose of one sample and view gets its own stream, so
/// adding a modality to a batch does not change the draws of the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The per-epoch shuffle of the sample order.
    Shuffle,
    /// The 25-joint skeleton: geometry (crop window, shear, rotation, flip) is drawn first,
    /// then noise. The joint states of the same view redraw the geometry from a fresh copy of
    /// this stream, so they stay in step with their skeleton.
    Skeleton,
    /// The other skeleton conventions, likewise.
    Skeleton17,
    Skeleton15,
    /// RGB-D geometry (crop window, crop box, flip), shared by depth and RGB of one view so
    /// the two streams stay aligned.
    Rgbd,
    /// Colour jitter of RGB.
    RgbColour,
    /// Depth noise.
    DepthNoise,
    /// Point-cloud augmentations.
    Points,
    /// Degradations (modality dropout, noise, sparsity, masks, holes).
    Degrade,
}

impl Purpose {
    fn code(self) -> u64 {
        match self {
            Purpose::Shuffle => 0,
            Purpose::Skeleton => 1,
            Purpose::Skeleton17 => 2,
            Purpose::Skeleton15 => 3,
            Purpose::Rgbd => 4,
            Purpose::RgbColour => 5,
            Purpose::DepthNoise => 6,
            Purpose::Points => 7,
            Purpose::Degrade => 8,
        }
    }
}

/// The generator for `purpose` of view `view` of sample `sample` in `epoch` of a run seeded
/// with `seed`.
pub fn sample_rng(seed: u64, epoch: u64, sample: u64, view: u32, purpose: Purpose) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[0..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    // 32 bits of sample index, 16 of view, 16 of purpose: distinct streams, never overlapping.
    rng.set_stream((sample << 32) | (u64::from(view & 0xffff) << 16) | purpose.code());
    rng
}

/// The generator of the sample order of `epoch`.
pub fn shuffle_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = sample_rng(seed, epoch, 0, 0, Purpose::Shuffle);
    // Sample 0 view 0 never uses `Shuffle` otherwise; mark the stream anyway to keep it apart.
    rng.set_stream(u64::MAX);
    rng
}

/// A uniform index in `0..n` (n >= 1) from one 32-bit draw by multiply-and-shift (Lemire),
/// without the rejection step: the bias is below n / 2^32 (under 1e-7 for the few hundred
/// points of a frame), and it skips the division `gen_range` pays on every call, which
/// dominated point dropout.
#[inline]
pub fn index_below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    debug_assert!(n >= 1 && n <= u32::MAX as usize);
    ((u64::from(rng.next_u32()) * n as u64) >> 32) as usize
}

/// Fills `out` with standard normal draws, fast enough for bulk noise (hundreds of thousands of
/// values per sample, e.g. depth noise). One 64-bit key is drawn from `rng`; value `i` is then
/// `Q(hash(key, i))`, where the hash is two rounds of a 32-bit integer mixer (counter-based,
/// so the loop vectorises, about 20x cheaper than a ChaCha word per value) and `Q` maps its top
/// 12 bits to one of 4096 equal-probability quantiles of N(0, 1). The distribution is exact up
/// to that quantisation (tails stop at 3.5 sigma); the table is rescaled to unit variance.
pub fn fill_normal(rng: &mut ChaCha8Rng, out: &mut [f32]) {
    let key = rng.next_u64();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { fill_normal_avx2(key, out) };
            return;
        }
    }
    fill_normal_keyed(key, out);
}

/// `fill_normal_keyed` compiled for AVX2 (8-lane integer multiplies); same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fill_normal_avx2(key: u64, out: &mut [f32]) {
    fill_normal_keyed(key, out)
}

#[inline(always)]
fn fill_normal_keyed(key: u64, out: &mut [f32]) {
    let table = normal_table();
    let (k0, k1) = (key as u32, (key >> 32) as u32);
    // Hashes first (a pure integer loop, vectorised), then the table lookups.
    let mut idx = [0u32; 256];
    for (c, chunk) in out.chunks_mut(idx.len()).enumerate() {
        let base = (c * idx.len()) as u32;
        for (j, h) in idx.iter_mut().enumerate() {
            let i = base.wrapping_add(j as u32);
            *h = mix32(mix32(i.wrapping_add(k0)) ^ k1) >> (32 - TABLE_BITS);
        }
        for (z, &h) in chunk.iter_mut().zip(&idx) {
            *z = table[h as usize];
        }
    }
}

/// A 32-bit integer hash with good avalanche ("lowbias32", C. Wellons, 2018).
#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

const TABLE_BITS: u32 = 12;
const TABLE_LEN: usize = 1 << TABLE_BITS;

fn normal_table() -> &'static [f32; TABLE_LEN] {
    static TABLE: OnceLock<Box<[f32; TABLE_LEN]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let q: Vec<f64> = (0..TABLE_LEN)
            .map(|k| inverse_normal_cdf((k as f64 + 0.5) / TABLE_LEN as f64))
            .collect();
        let var = q.iter().map(|x| x * x).sum::<f64>() / TABLE_LEN as f64;
        let scale = 1.0 / var.sqrt();
        let mut t = Box::new([0f32; TABLE_LEN]);
        for (t, q) in t.iter_mut().zip(&q) {
            *t = (q * scale) as f32;
        }
        t
    })
}

/// The standard normal quantile function (Acklam's rational approximation, relative error
/// below 1.2e-9), for `p` in (0, 1).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const LOW: f64 = 0.02425;
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_repeat() {
        let a = sample_rng(1, 2, 3, 0, Purpose::Skeleton).next_u64();
        assert_eq!(a, sample_rng(1, 2, 3, 0, Purpose::Skeleton).next_u64());
        assert_ne!(a, sample_rng(1, 2, 3, 1, Purpose::Skeleton).next_u64());
        assert_ne!(a, sample_rng(1, 2, 4, 0, Purpose::Skeleton).next_u64());
        assert_ne!(a, sample_rng(1, 3, 3, 0, Purpose::Skeleton).next_u64());
        assert_ne!(a, sample_rng(2, 2, 3, 0, Purpose::Skeleton).next_u64());
        assert_ne!(a, sample_rng(1, 2, 3, 0, Purpose::Points).next_u64());
    }

    #[test]
    fn index_below_covers_its_range_evenly() {
        let mut rng = sample_rng(3, 0, 0, 0, Purpose::Points);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[index_below(&mut rng, 7)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(index_below(&mut rng, 1), 0);
    }

    #[test]
    fn fill_normal_has_unit_moments() {
        let mut rng = sample_rng(7, 0, 0, 0, Purpose::DepthNoise);
        let n = 200_000;
        let mut z = vec![0f32; n];
        fill_normal(&mut rng, &mut z);
        let (mut s, mut s2) = (0f64, 0f64);
        for &z in &z {
            let z = f64::from(z);
            s += z;
            s2 += z * z;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        assert!((inverse_normal_cdf(0.975) - 1.959964).abs() < 1e-5);
    }
}
