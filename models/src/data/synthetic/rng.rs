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

/// A standard normal draw (Box-Muller; one of the pair is dropped for simplicity).
pub fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}
