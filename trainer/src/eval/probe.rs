//! The linear probe: a linear classifier trained on fixed features (paper 000: frozen encoders
//! and AMG, a linear head on Z_fusion).

use super::metrics::{top1, SplitMix};
use engine::nn::{Linear, Module, ParamStore};
use engine::optim::{AdamW, AdamWConfig, Optimizer};
use engine::{Device, Error, Reduction, Result, Tensor};

/// How the probe is trained: AdamW on the cross-entropy, seeded minibatches, the learning rate
/// decayed from `lr` to 0 by a half cosine over all steps.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Passes over the train features (paper 000: 50).
    pub epochs: usize,
    pub batch_size: usize,
    /// The peak learning rate of AdamW.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Seeds the classifier's initialisation and the minibatch order.
    pub seed: u64,
}

impl Default for ProbeConfig {
    /// 50 epochs (the paper's), batches of 256, AdamW at lr 0.01 with weight decay 1e-4, seed 0:
    /// on standardised features this converges within the epochs on every dataset we have.
    fn default() -> Self {
        ProbeConfig {
            epochs: 50,
            batch_size: 256,
            lr: 1e-2,
            weight_decay: 1e-4,
            seed: 0,
        }
    }
}

/// What the probe learned and how well it does.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// Top-1 (%) on the train features, with the final classifier.
    pub train_top1: f64,
    /// Top-1 (%) on the test features.
    pub test_top1: f64,
    /// The classifier on the raw (unstandardised) features: (classes, dim) row-major, so
    /// `logits = x W^T + b`. The standardisation is folded in.
    pub weight: Vec<f32>,
    /// (classes,).
    pub bias: Vec<f32>,
}

impl ProbeResult {
    /// The logits (n, classes) of raw features `x` (n, dim) under the probe's classifier.
    pub fn logits(&self, x: &[f32], dim: usize) -> Vec<f32> {
        linear_logits(x, dim, &self.weight, &self.bias)
    }
}

/// `x W^T + b` in f64, as f32.
fn linear_logits(x: &[f32], dim: usize, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    if dim == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(x.len() / dim * bias.len());
    for row in x.chunks_exact(dim) {
        for (w, &b) in weight.chunks_exact(dim).zip(bias) {
            let s: f64 = row.iter().zip(w).map(|(&a, &w)| a as f64 * w as f64).sum();
            out.push((s + b as f64) as f32);
        }
    }
    out
}

/// The per-dimension mean and standard deviation of `x` (n, dim); a constant dimension gets a
/// standard deviation of 1 (it is only centred); so does one whose spread is below about 1e-6
/// of its magnitude (float round-off).
pub fn feature_stats(x: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len().checked_div(dim).unwrap_or(0);
    let mut mean = vec![0f64; dim];
    let mut var = vec![0f64; dim];
    if n == 0 {
        return (mean, vec![1.0; dim]);
    }
    for row in x.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    for row in x.chunks_exact(dim) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (v as f64 - m) * (v as f64 - m);
        }
    }
    // A spread below float round-off of the values counts as constant.
    let std = var
        .iter()
        .zip(&mean)
        .map(|(s, m)| {
            let sd = (s / n as f64).sqrt();
            if sd > 1e-6 * (1.0 + m.abs()) {
                sd
            } else {
                1.0
            }
        })
        .collect();
    (mean, std)
}

fn standardise(x: &[f32], mean: &[f64], std: &[f64]) -> Vec<f32> {
    let dim = mean.len();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(dim) {
        out.extend(
            row.iter()
                .zip(mean.iter().zip(std))
                .map(|(&v, (m, s))| ((v as f64 - m) / s) as f32),
        );
    }
    out
}

fn check_set(
    what: &str,
    x: &[f32],
    y: &[i64],
    dim: usize,
    classes: usize,
    may_be_empty: bool,
) -> Result<()> {
    let op = "linear_probe";
    if x.len() != y.len() * dim {
        return Err(Error::invalid(
            op,
            format!(
                "{what}: {} feature values are not {} rows of dimension {dim}",
                x.len(),
                y.len()
            ),
        ));
    }
    if y.is_empty() && !may_be_empty {
        return Err(Error::invalid(op, format!("{what}: no samples")));
    }
    if let Some(bad) = y.iter().find(|&&l| !(0..classes as i64).contains(&l)) {
        return Err(Error::invalid(
            op,
            format!("{what}: label {bad} outside 0..{classes}"),
        ));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            op,
            format!(
                "{what}: sample {} has a non-finite feature ({})",
                i / dim,
                x[i]
            ),
        ));
    }
    Ok(())
}

/// Trains a linear classifier (engine `Linear` + cross-entropy, AdamW, seeded minibatches, on
/// the CPU) on the fixed features `train_x` (n, dim) with labels `train_y`, and reports its
/// Top-1 (%) on the train and the test features. Features are standardised with the train
/// set's per-dimension mean and standard deviation; the returned classifier has that folded
/// in and applies to raw features. The same inputs and config give the same result, bit for
/// bit. An empty test set gives a NaN `test_top1`; mismatched lengths, labels outside
/// `0..classes`, non-finite features and a bad config are errors.
pub fn linear_probe(
    train_x: &[f32],
    train_y: &[i64],
    test_x: &[f32],
    test_y: &[i64],
    dim: usize,
    classes: usize,
    cfg: &ProbeConfig,
) -> Result<ProbeResult> {
    let op = "linear_probe";
    if dim == 0 || classes == 0 {
        return Err(Error::invalid(
            op,
            format!("dim and classes must be positive, got {dim} and {classes}"),
        ));
    }
    if cfg.epochs == 0 || cfg.batch_size == 0 {
        return Err(Error::invalid(
            op,
            format!(
                "epochs and batch size must be positive, got {} and {}",
                cfg.epochs, cfg.batch_size
            ),
        ));
    }
    let lr_ok = cfg.lr.is_finite() && cfg.lr > 0.0;
    let wd_ok = cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0;
    if !lr_ok || !wd_ok {
        return Err(Error::invalid(
            op,
            format!(
                "lr must be positive and weight decay non-negative, got {} and {}",
                cfg.lr, cfg.weight_decay
            ),
        ));
    }
    check_set("train set", train_x, train_y, dim, classes, false)?;
    check_set("test set", test_x, test_y, dim, classes, true)?;

    let (mean, std) = feature_stats(train_x, dim);
    let xs = standardise(train_x, &mean, &std);
    let n = train_y.len();

    let store = ParamStore::with_seed(cfg.seed);
    let linear = Linear::new(&store.root().sub("probe"), dim, classes, true)?;
    let mut opt = AdamW::from_store(
        &store,
        AdamWConfig::new(cfg.lr).weight_decay(cfg.weight_decay),
    )?;
    let steps_per_epoch = n.div_ceil(cfg.batch_size);
    let total = (cfg.epochs * steps_per_epoch) as f64;
    let mut rng = SplitMix::new(cfg.seed.wrapping_add(0x9b0e));
    let mut order: Vec<usize> = (0..n).collect();
    let mut bx: Vec<f32> = Vec::with_capacity(cfg.batch_size.min(n) * dim);
    let mut by: Vec<i64> = Vec::with_capacity(cfg.batch_size.min(n));
    let mut step = 0usize;
    for _ in 0..cfg.epochs {
        rng.shuffle(&mut order);
        for chunk in order.chunks(cfg.batch_size) {
            bx.clear();
            by.clear();
            for &i in chunk {
                bx.extend_from_slice(&xs[i * dim..(i + 1) * dim]);
                by.push(train_y[i]);
            }
            let x = Tensor::from_vec(bx.clone(), [chunk.len(), dim], Device::Cpu)?;
            let y = Tensor::from_vec(by.clone(), [chunk.len()], Device::Cpu)?;
            let loss = linear
                .forward(&x)?
                .cross_entropy(&y, Reduction::Mean, 0.0)?;
            opt.set_lr(0.5 * cfg.lr * (1.0 + (std::f64::consts::PI * step as f64 / total).cos()));
            loss.backward()?;
            opt.step()?;
            opt.zero_grad();
            step += 1;
        }
    }

    // Fold the standardisation in: W' = W / std, b' = b - W' mean.
    let w = linear.weight.to_f64_vec()?;
    let b = match &linear.bias {
        Some(b) => b.to_f64_vec()?,
        None => vec![0.0; classes],
    };
    let mut weight = Vec::with_capacity(classes * dim);
    let mut bias = Vec::with_capacity(classes);
    for (wc, bc) in w.chunks_exact(dim).zip(&b) {
        let mut shift = 0.0;
        for ((&wj, m), s) in wc.iter().zip(&mean).zip(&std) {
            let wf = wj / s;
            shift += wf * m;
            weight.push(wf as f32);
        }
        bias.push((bc - shift) as f32);
    }
    let train_top1 = top1(
        &linear_logits(train_x, dim, &weight, &bias),
        train_y,
        classes,
    );
    let test_top1 = top1(&linear_logits(test_x, dim, &weight, &bias), test_y, classes);
    Ok(ProbeResult {
        train_top1,
        test_top1,
        weight,
        bias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Box-Muller normal draws.
    fn normal(rng: &mut SplitMix) -> f64 {
        let u1 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// `per_class` samples of each of `classes` Gaussian clusters (unit noise) in `dim`
    /// dimensions around centres with coordinates +-3; dimension 0 is rescaled to thousands
    /// (x 1000 + 5000) so the probe depends on its standardisation.
    fn clusters(classes: usize, per_class: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<i64>) {
        let mut rng = SplitMix::new(99);
        let centres: Vec<f64> = (0..classes * dim)
            .map(|_| if rng.next_u64() & 1 == 0 { 3.0 } else { -3.0 })
            .collect();
        let mut rng = SplitMix::new(seed);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..classes * per_class {
            let c = i % classes;
            for j in 0..dim {
                let mut v = centres[c * dim + j] + normal(&mut rng);
                if j == 0 {
                    v = v * 1000.0 + 5000.0;
                }
                x.push(v as f32);
            }
            y.push(c as i64);
        }
        (x, y)
    }

    const DIM: usize = 12;
    const CLASSES: usize = 6;

    fn cfg(seed: u64) -> ProbeConfig {
        ProbeConfig {
            epochs: 30,
            batch_size: 32,
            seed,
            ..ProbeConfig::default()
        }
    }

    #[test]
    fn the_probe_separates_gaussian_clusters_deterministically() {
        let (tx, ty) = clusters(CLASSES, 40, DIM, 1);
        let (vx, vy) = clusters(CLASSES, 20, DIM, 2);
        let r = linear_probe(&tx, &ty, &vx, &vy, DIM, CLASSES, &cfg(5)).unwrap();
        assert_eq!(r.train_top1, 100.0, "{r:?}");
        assert_eq!(r.test_top1, 100.0, "{r:?}");
        assert_eq!(r.weight.len(), CLASSES * DIM);
        assert_eq!(r.bias.len(), CLASSES);
        // The returned classifier applies to raw features and reproduces the reported Top-1.
        assert_eq!(top1(&r.logits(&vx, DIM), &vy, CLASSES), r.test_top1);
        // Same seed, same probe, bit for bit; another seed, another probe.
        let again = linear_probe(&tx, &ty, &vx, &vy, DIM, CLASSES, &cfg(5)).unwrap();
        assert_eq!(again, r);
        let other = linear_probe(&tx, &ty, &vx, &vy, DIM, CLASSES, &cfg(6)).unwrap();
        assert_ne!(other.weight, r.weight);
        // Shuffled labels cannot be learnt on the test set: near chance (1/6).
        let mut rng = SplitMix::new(4);
        let mut sy = ty.clone();
        rng.shuffle(&mut sy);
        let chance = linear_probe(&tx, &sy, &vx, &vy, DIM, CLASSES, &cfg(5)).unwrap();
        assert!(chance.test_top1 < 45.0, "{}", chance.test_top1);
    }

    #[test]
    fn feature_stats_and_standardisation() {
        let x = [1.0, 10.0, 3.0, 10.0, 5.0, 10.0];
        let (m, s) = feature_stats(&x, 2);
        assert_eq!(m, [3.0, 10.0]);
        assert!((s[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(s[1], 1.0, "a constant dimension is only centred");
        let z = standardise(&x, &m, &s);
        assert_eq!(z[1], 0.0);
        assert_eq!(z[2], 0.0);
        assert!((z[0] + z[4]).abs() < 1e-6);
    }

    #[test]
    fn bad_probe_inputs_are_errors() {
        let (tx, ty) = clusters(3, 4, 4, 1);
        let ok = |r: Result<ProbeResult>| r.is_ok();
        let c = cfg(0);
        assert!(ok(linear_probe(&tx, &ty, &tx, &ty, 4, 3, &c)));
        assert!(!ok(linear_probe(&tx, &ty, &tx, &ty, 5, 3, &c)));
        assert!(
            !ok(linear_probe(&tx, &ty, &tx, &ty, 4, 2, &c)),
            "label 2 of 2 classes"
        );
        assert!(!ok(linear_probe(&tx, &ty, &tx[1..], &ty, 4, 3, &c)));
        assert!(!ok(linear_probe(&[], &[], &tx, &ty, 4, 3, &c)));
        let mut nan = tx.clone();
        nan[7] = f32::NAN;
        let err = linear_probe(&nan, &ty, &tx, &ty, 4, 3, &c)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sample 1"), "{err}");
        for bad in [
            ProbeConfig {
                epochs: 0,
                ..c.clone()
            },
            ProbeConfig {
                batch_size: 0,
                ..c.clone()
            },
            ProbeConfig {
                lr: -1.0,
                ..c.clone()
            },
            ProbeConfig {
                weight_decay: f64::NAN,
                ..c.clone()
            },
        ] {
            assert!(!ok(linear_probe(&tx, &ty, &tx, &ty, 4, 3, &bad)), "{bad:?}");
        }
        let empty_test = linear_probe(&tx, &ty, &[], &[], 4, 3, &c).unwrap();
        assert!(empty_test.test_top1.is_nan());
    }
}
