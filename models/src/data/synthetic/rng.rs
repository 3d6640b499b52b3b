//! Random streams of the generator. Every random choice comes from a ChaCha stream keyed by
//! (dataset seed, what it is for, which one), never from a shared generator, so a sample is the
//! same whichever thread makes it and in whatever order, and each stream's numbers do not
//! depend on which other streams were asked for.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a stream is for: separate purposes never share numbers.
#[derive(Clone, Copy, Debug)]
pub enum Purpose {
    /// A subject's body, clothing and habits.
    Subject = 1,
    /// One performance (class, subject, replication), shared by the cameras that film it.
    Motion = 2,
    /// A setup's room.
    Setup = 3,
    /// Where one camera stands for one recording.
    Placement = 4,
    /// One recording's skeleton sensor: jitter, lost joints, inferred positions.
    Skeleton = 5,
    /// The pose estimator behind the 17- and 15-joint skeletons.
    Estimator = 6,
    /// Depth noise and holes.
    Depth = 7,
    /// Colour noise.
    Colour = 8,
    /// Which depth pixels become points.
    Points = 9,
}

/// The stream for `purpose` and `id` under `seed`.
pub fn stream(seed: u64, purpose: Purpose, id: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    key[16..24].copy_from_slice(&id.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// An approximately standard normal draw: the Irwin-Hall sum of four uniforms from one 64-bit
/// draw, rescaled to unit variance (bounded at about 3.5 sigma). Sensor noise needs millions of
/// these per recording, and `ln`/`cos` of Box-Muller dominated the generator's time.
pub fn normal(rng: &mut impl Rng) -> f32 {
    let bits: u64 = rng.gen();
    let sum: u32 = (0..4).map(|k| ((bits >> (16 * k)) & 0xffff) as u32).sum();
    // Each term is uniform on [0, 65535]: the sum has mean 2 * 65535 and variance 4/12 of
    // 65535 squared.
    (sum as f32 / 65535.0 - 2.0) * 3f32.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_unit_variance_and_streams_differ() {
        let mut rng = stream(7, Purpose::Depth, 1);
        let n = 200_000;
        let xs: Vec<f32> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f32>() / n as f32;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n as f32;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        let a: u64 = stream(7, Purpose::Depth, 1).gen();
        let b: u64 = stream(7, Purpose::Colour, 1).gen();
        let c: u64 = stream(7, Purpose::Depth, 2).gen();
        let d: u64 = stream(8, Purpose::Depth, 1).gen();
        assert!(a != b && a != c && a != d);
    }
}
