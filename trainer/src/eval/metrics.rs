//! Accuracy, the robustness scores RDP and RGS, and the label fractions of the semi-supervised
//! protocols.
//!
//! Every accuracy here is a percentage in [0, 100], as the paper's tables give them.

/// Top-1 accuracy (%) of `logits` (n, classes) row-major against `labels` (n,): the share of
/// rows whose largest logit is at the label's index. Ties go to the lowest class index; NaN
/// logits never win. NaN when there is no sample or the lengths do not fit together
/// (`logits.len() != labels.len() * classes`).
pub fn top1(logits: &[f32], labels: &[i64], classes: usize) -> f64 {
    if labels.is_empty() || classes == 0 || logits.len() != labels.len() * classes {
        return f64::NAN;
    }
    let correct = logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &y)| argmax(row).is_some_and(|p| p as i64 == y))
        .count();
    100.0 * correct as f64 / labels.len() as f64
}

/// The index of the largest value (the first one on ties), ignoring NaN; None when every value
/// is NaN.
pub(crate) fn argmax<T: Copy + PartialOrd>(row: &[T]) -> Option<usize> {
    let mut best: Option<(usize, T)> = None;
    for (i, &v) in row.iter().enumerate() {
        // NaN fails every comparison (also with itself): it neither wins nor is kept.
        #[allow(clippy::eq_op)]
        if v != v {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => {}
            _ => best = Some((i, v)),
        }
    }
    best.map(|(i, _)| i)
}

/// Robustness Degradation Percentage: how much of the clean accuracy a degradation costs,
/// `RDP = 100 (clean - degraded) / clean` (%). Lower is more robust; negative when the
/// degraded accuracy is higher. NaN when `clean` is 0.
pub fn rdp(clean: f64, degraded: f64) -> f64 {
    if clean == 0.0 {
        return f64::NAN;
    }
    100.0 * (clean - degraded) / clean
}

/// Robustness Gain Score: the relative improvement of our accuracy over a baseline's under the
/// same degradation, `RGS = 100 (ours - baseline) / baseline` (%). NaN when `baseline` is 0.
pub fn rgs(ours: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        return f64::NAN;
    }
    100.0 * (ours - baseline) / baseline
}

/// The mean RDP over several degradations of one clean accuracy (the "Average RDP" column of
/// paper 000 Table III). NaN for an empty list.
pub fn average_rdp(clean: f64, degraded: &[f64]) -> f64 {
    mean(degraded.iter().map(|&d| rdp(clean, d)))
}

/// The mean RGS over matched scenarios (`ours[i]` against `baseline[i]`): the single RGS of a
/// table row. NaN for empty or unequal lists.
pub fn average_rgs(ours: &[f64], baseline: &[f64]) -> f64 {
    if ours.len() != baseline.len() {
        return f64::NAN;
    }
    mean(ours.iter().zip(baseline).map(|(&o, &b)| rgs(o, b)))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        sum += v;
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// A small seeded generator (SplitMix64) for the evaluation's own random choices (probe
/// minibatch order, label subsets): fixed, portable, independent of any crate's version.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> SplitMix {
        SplitMix(seed ^ 0x6a09_e667_f3bc_c909)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), by rejection (no modulo bias).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The labelled subset of a semi-supervised protocol: a seeded, class-stratified subset of the
/// train samples `indices`, where `labels[i]` is the label of `indices[i]`.
///
/// Each class c with n_c samples keeps `max(1, round(fraction * n_c))` of them, drawn uniformly
/// (a seeded shuffle per class), so every class present in `indices` keeps at least one sample
/// and the subset holds about `fraction` of them. `fraction` is clamped to [0, 1] (NaN counts
/// as 0: one sample per class); 1 keeps everything. The result keeps the order of `indices`.
/// Returns an empty list when `labels` and `indices` differ in length.
pub fn label_subset(indices: &[u32], labels: &[i64], fraction: f64, seed: u64) -> Vec<u32> {
    if indices.len() != labels.len() {
        return Vec::new();
    }
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    // Positions of each class, in order of first appearance of the class label value.
    let mut classes: Vec<i64> = labels.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut keep = vec![false; indices.len()];
    for &c in &classes {
        let mut pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        let n = pos.len();
        let take = ((fraction * n as f64).round() as usize).clamp(1, n);
        // A generator per class: adding a class does not change the draws of the others.
        let mut rng = SplitMix::new(seed ^ (c as u64).wrapping_mul(0xd1b5_4a32_d192_ed03));
        rng.shuffle(&mut pos);
        for &p in &pos[..take] {
            keep[p] = true;
        }
    }
    indices
        .iter()
        .zip(&keep)
        .filter_map(|(&i, &k)| k.then_some(i))
        .collect()
}

/// The labels of dataset samples `indices`, for `label_subset` and the probes; an error names
/// an index past the dataset's end.
pub fn dataset_labels(
    dataset: &models::data::format::Dataset,
    indices: &[u32],
) -> engine::Result<Vec<i64>> {
    indices
        .iter()
        .map(|&i| {
            dataset
                .meta(i as usize)
                .map(|m| m.label as i64)
                .map_err(|e| engine::Error::invalid("dataset_labels", e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_on_a_hand_made_example() {
        // 4 samples, 3 classes: predictions 2, 0, 1 (a tie between 1 and 2 goes to 1), 1 (NaN
        // never wins).
        let logits = [
            0.1,
            0.2,
            0.9, //
            2.0,
            -1.0,
            0.5, //
            0.0,
            3.0,
            3.0, //
            f32::NAN,
            -1.0,
            -2.0,
        ];
        assert_eq!(top1(&logits, &[2, 0, 1, 1], 3), 100.0);
        assert_eq!(top1(&logits, &[2, 0, 2, 1], 3), 75.0);
        assert_eq!(top1(&logits, &[2, 1, 1, 0], 3), 50.0);
        assert_eq!(top1(&logits, &[0, 1, 0, 0], 3), 0.0);
        // NaN is skipped: the last row predicts class 1.
        assert_eq!(top1(&logits[9..], &[1], 3), 100.0);
        assert!(top1(&logits, &[2, 0, 1], 3).is_nan());
        assert!(top1(&[], &[], 3).is_nan());
    }

    #[test]
    fn rdp_and_rgs_values() {
        // Paper 000 Table II, RCMCL: all three 86.7, R&P missing 65.1 -> RDP 24.9 (table: 25.0).
        assert!((rdp(86.7, 65.1) - 24.913_494_809_688_58).abs() < 1e-9);
        assert_eq!(rdp(80.0, 60.0), 25.0);
        assert_eq!(rdp(80.0, 80.0), 0.0);
        assert_eq!(rdp(50.0, 60.0), -20.0);
        assert!(rdp(0.0, 10.0).is_nan());
        assert_eq!(rgs(60.0, 40.0), 50.0);
        assert_eq!(rgs(30.0, 40.0), -25.0);
        assert!(rgs(10.0, 0.0).is_nan());
        assert_eq!(average_rdp(80.0, &[60.0, 40.0]), 37.5);
        assert_eq!(average_rgs(&[60.0, 30.0], &[40.0, 40.0]), 12.5);
        assert!(average_rgs(&[60.0], &[40.0, 40.0]).is_nan());
        assert!(average_rdp(80.0, &[]).is_nan());
    }

    #[test]
    fn label_subsets_are_stratified_sized_and_seeded() {
        // 3 classes with 50, 20 and 3 samples, interleaved, on indices 1000...
        let mut labels = Vec::new();
        for i in 0..73 {
            labels.push(match i % 5 {
                _ if i >= 70 => 2,
                0 | 1 => 1,
                _ => 0,
            });
        }
        let n0 = labels.iter().filter(|&&l| l == 0).count();
        let n1 = labels.iter().filter(|&&l| l == 1).count();
        assert_eq!((n0, n1, 73 - n0 - n1), (42, 28, 3));
        let indices: Vec<u32> = (0..73).map(|i| 1000 + 3 * i).collect();
        let count = |sub: &[u32], c: i64| {
            sub.iter()
                .filter(|&&i| labels[((i - 1000) / 3) as usize] == c)
                .count()
        };
        let sub = label_subset(&indices, &labels, 0.1, 7);
        // round(4.2) = 4, round(2.8) = 3, round(0.3) = 0 -> at least 1.
        assert_eq!((count(&sub, 0), count(&sub, 1), count(&sub, 2)), (4, 3, 1));
        assert_eq!(sub.len(), 8);
        assert!(sub.windows(2).all(|w| w[0] < w[1]), "in the order given");
        assert!(sub.iter().all(|i| indices.contains(i)));
        assert_eq!(label_subset(&indices, &labels, 0.1, 7), sub, "seeded");
        let other = label_subset(&indices, &labels, 0.1, 8);
        assert_ne!(other, sub, "another seed draws another subset");
        assert_eq!(other.len(), 8);
        let half = label_subset(&indices, &labels, 0.5, 7);
        assert_eq!(
            (count(&half, 0), count(&half, 1), count(&half, 2)),
            (21, 14, 2)
        );
        assert_eq!(label_subset(&indices, &labels, 1.0, 7), indices);
        assert_eq!(label_subset(&indices, &labels, 0.0, 7).len(), 3);
        assert_eq!(label_subset(&indices, &labels, f64::NAN, 7).len(), 3);
        assert!(label_subset(&indices, &labels[1..], 0.5, 7).is_empty());
        // Subsets are spread over the class, not its first samples.
        let firsts: Vec<u32> = indices
            .iter()
            .zip(&labels)
            .filter(|(_, &l)| l == 0)
            .map(|(&i, _)| i)
            .take(21)
            .collect();
        let half0: Vec<u32> = half
            .iter()
            .copied()
            .filter(|&i| labels[((i - 1000) / 3) as usize] == 0)
            .collect();
        assert_ne!(half0, firsts);
    }

    #[test]
    fn splitmix_shuffles_uniformly_enough() {
        let mut rng = SplitMix::new(3);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            let mut v = [0, 1, 2, 3];
            rng.shuffle(&mut v);
            counts[v[0]] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
    }
}
