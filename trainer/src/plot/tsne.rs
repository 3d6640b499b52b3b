//! Exact t-SNE (van der Maaten & Hinton, 2008), O(n^2) per iteration, for up to a few thousand
//! points.
//!
//! The steps follow the reference implementation (`tsne.py` by van der Maaten, and scikit-learn's
//! `TSNE(method="exact")`):
//! 1. squared Euclidean distances between the inputs (f64);
//! 2. for each row i, a search on the precision beta_i = 1 / (2 sigma_i^2) (bisection bracket with
//!    Newton steps inside it, to |H - log(perplexity)| < 1e-10) so that the
//!    conditional distribution p_{j|i} ∝ exp(-beta_i d_ij) has the requested perplexity
//!    (2^{H(P_i)} with H in bits; we work in nats, exp(H), which is the same number);
//! 3. the joint P = (P_{j|i} + P_{i|j}) / sum, clamped below at 1e-12 off the diagonal;
//! 4. gradient descent on KL(P || Q) with the Student-t kernel q_ij ∝ (1 + |y_i - y_j|^2)^-1,
//!    starting from a seeded Gaussian (std 1e-4): early exaggeration (P multiplied by
//!    `early_exaggeration`) and momentum 0.5 for the first phase, then momentum 0.8; per-parameter
//!    gains (delta-bar-delta: +0.2 when the gradient's sign differs from the last update's, x0.8
//!    otherwise, never below 0.01); the embedding is re-centred after every step.
//!
//! Rows are processed in parallel with rayon; every reduction is done in a fixed order, so the
//! result depends only on the inputs and the seed, not on the number of threads.

use rayon::prelude::*;

use super::PlotError;

/// Iterations of the early-exaggeration phase (and of momentum 0.5) in the reference
/// implementation, for its default of 1000 iterations.
pub const EXAGGERATION_ITERATIONS: usize = 250;

/// Smallest joint probability kept (the reference's machine-epsilon clamp).
const P_FLOOR: f64 = 1e-12;

/// Settings of [`tsne`].
#[derive(Clone, Debug, PartialEq)]
pub struct TsneConfig {
    /// Effective number of neighbours of each point (30 by default); must be below the number of
    /// points.
    pub perplexity: f64,
    /// Gradient-descent iterations in all (1000 by default). The first
    /// `min(250, iterations / 4)` are the early-exaggeration phase (250 for the default).
    pub iterations: usize,
    /// Step size; `None` is the reference's "auto": `max(n / early_exaggeration / 4, 50)`.
    pub learning_rate: Option<f64>,
    /// Factor on P during the first phase (12 by default).
    pub early_exaggeration: f64,
    /// Seed of the Gaussian initialisation.
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        TsneConfig {
            perplexity: 30.0,
            iterations: 1000,
            learning_rate: None,
            early_exaggeration: 12.0,
            seed: 0,
        }
    }
}

impl TsneConfig {
    /// Number of iterations with early exaggeration and momentum 0.5:
    /// `min(250, iterations / 4)`.
    pub fn exaggeration_iterations(&self) -> usize {
        EXAGGERATION_ITERATIONS.min(self.iterations / 4)
    }

    /// The learning rate used for `n` points (the given one, or the reference's "auto" rule).
    pub fn learning_rate_for(&self, n: usize) -> f64 {
        self.learning_rate
            .unwrap_or_else(|| (n as f64 / self.early_exaggeration / 4.0).max(50.0))
    }
}

/// What [`tsne_traced`] gives besides the embedding: the KL divergence KL(P || Q) (with the
/// un-exaggerated P) after the given iteration numbers (0 = the initialisation).
#[derive(Clone, Debug, PartialEq)]
pub struct TsneTrace {
    /// `(iteration, KL(P || Q))`, every `every` iterations and after the last one.
    pub kl: Vec<(usize, f64)>,
}

/// Embeds `n` points of dimension `dim` (row-major `x`, `n * dim` values) in 2-D with exact t-SNE.
///
/// Errors (never panics) for `n < 2`, a wrong length of `x`, `dim == 0`, a NaN or infinite input,
/// a perplexity outside `(0, n)` (i.e. `perplexity >= n` is refused), a non-positive or non-finite
/// learning rate or early exaggeration.
pub fn tsne(x: &[f32], n: usize, dim: usize, cfg: &TsneConfig) -> Result<Vec<[f64; 2]>, PlotError> {
    tsne_impl(x, n, dim, cfg, None).map(|(y, _)| y)
}

/// [`tsne`], also recording KL(P || Q) at iteration 0, every `every` iterations (`every >= 1`)
/// and after the last iteration. Recording costs one extra logarithm per pair at those iterations.
pub fn tsne_traced(
    x: &[f32],
    n: usize,
    dim: usize,
    cfg: &TsneConfig,
    every: usize,
) -> Result<(Vec<[f64; 2]>, TsneTrace), PlotError> {
    if every == 0 {
        return Err(PlotError::invalid(
            "tsne_traced: `every` must be at least 1",
        ));
    }
    tsne_impl(x, n, dim, cfg, Some(every))
}

fn validate(x: &[f32], n: usize, dim: usize, cfg: &TsneConfig) -> Result<(), PlotError> {
    if n < 2 {
        return Err(PlotError::invalid(format!(
            "t-SNE needs at least 2 points, got {n}"
        )));
    }
    if dim == 0 {
        return Err(PlotError::invalid("t-SNE: input dimension is 0"));
    }
    if n.checked_mul(dim) != Some(x.len()) {
        return Err(PlotError::invalid(format!(
            "t-SNE: {} values given for {n} points of dimension {dim}",
            x.len()
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(PlotError::invalid(format!(
            "t-SNE: input value {} (point {}, coordinate {}) is not finite",
            x[i],
            i / dim,
            i % dim
        )));
    }
    if !(cfg.perplexity.is_finite() && cfg.perplexity > 0.0 && cfg.perplexity < n as f64) {
        return Err(PlotError::invalid(format!(
            "t-SNE: perplexity {} must be in (0, n = {n})",
            cfg.perplexity
        )));
    }
    if !(cfg.early_exaggeration.is_finite() && cfg.early_exaggeration > 0.0) {
        return Err(PlotError::invalid(format!(
            "t-SNE: early exaggeration {} must be positive",
            cfg.early_exaggeration
        )));
    }
    if let Some(lr) = cfg.learning_rate {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(PlotError::invalid(format!(
                "t-SNE: learning rate {lr} must be positive"
            )));
        }
    }
    Ok(())
}

/// Squared Euclidean distances, `n * n` row-major, computed in f64.
fn squared_distances(x: &[f32], n: usize, dim: usize) -> Vec<f64> {
    let mut d = vec![0.0f64; n * n];
    d.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        let xi = &x[i * dim..(i + 1) * dim];
        for (j, out) in row.iter_mut().enumerate() {
            let xj = &x[j * dim..(j + 1) * dim];
            let mut s = 0.0f64;
            for k in 0..dim {
                let t = xi[k] as f64 - xj[k] as f64;
                s += t * t;
            }
            *out = s;
        }
    });
    d
}

/// Calibrates one row: writes p_{j|i} into `p_row` (0 at `i`), returns beta_i.
fn calibrate_row(d_row: &[f64], i: usize, target_entropy: f64, p_row: &mut [f64]) -> f64 {
    // Shift by the smallest off-diagonal distance: exp(-beta (d - dmin)) never underflows for the
    // nearest neighbour, and the normalised distribution is unchanged.
    let dmin = d_row
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(_, &v)| v)
        .fold(f64::INFINITY, f64::min);
    // Entropy H (nats) of the row for a given beta, and dH/dbeta = -beta Var_p(s); writes the
    // unnormalised row.
    let eval = |beta: f64, p_row: &mut [f64]| -> (f64, f64) {
        let (mut sum, mut m1, mut m2) = (0.0, 0.0, 0.0);
        for (j, (p, &dj)) in p_row.iter_mut().zip(d_row).enumerate() {
            if j == i {
                *p = 0.0;
                continue;
            }
            let s = dj - dmin;
            let v = (-beta * s).exp();
            *p = v;
            sum += v;
            m1 += s * v;
            m2 += s * s * v;
        }
        // sum >= 1 (the nearest neighbour contributes exp(0)).
        let (e1, e2) = (m1 / sum, m2 / sum);
        (sum.ln() + beta * e1, -beta * (e2 - e1 * e1))
    };
    // Start from 1 / mean shifted distance (the right scale), keep a bracket [lo, hi] of the
    // root (H decreases with beta), take Newton steps inside the bracket, bisect otherwise.
    let n_others = (d_row.len() - 1).max(1) as f64;
    let mean_s = d_row
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i)
        .map(|(_, &v)| v - dmin)
        .sum::<f64>()
        / n_others;
    let mut beta = if mean_s > 0.0 && mean_s.is_finite() {
        1.0 / mean_s
    } else {
        1.0
    };
    let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
    let mut converged = false;
    for _ in 0..200 {
        let (h, dh) = eval(beta, p_row);
        let diff = h - target_entropy;
        if diff.abs() < 1e-10 {
            converged = true;
            break;
        }
        if diff > 0.0 {
            // Too flat: increase the precision.
            lo = beta;
        } else {
            hi = beta;
        }
        let newton = beta - diff / dh;
        beta = if newton.is_finite() && newton > lo && newton < hi {
            newton
        } else if hi.is_finite() {
            0.5 * (lo + hi)
        } else {
            beta * 2.0
        };
        if hi.is_finite() && hi - lo <= 1e-15 * hi {
            // Bracket exhausted (e.g. duplicate points make the target unreachable).
            break;
        }
    }
    if !converged {
        // The row in `p_row` is for the previous beta.
        eval(beta, p_row);
    }
    let sum: f64 = p_row.iter().sum();
    for p in p_row.iter_mut() {
        *p /= sum;
    }
    beta
}

/// The conditional distributions p_{j|i} of t-SNE, each row calibrated by a bracketed search on its
/// precision beta_i so that its perplexity exp(H(P_i)) (= 2^{H in bits}) equals `perplexity`.
///
/// Returns the row-major `n * n` matrix (rows sum to 1, zero diagonal) and the precisions beta_i
/// (p_{j|i} ∝ exp(-beta_i |x_i - x_j|^2)). Same input checks as [`tsne`].
pub fn conditional_probabilities(
    x: &[f32],
    n: usize,
    dim: usize,
    perplexity: f64,
) -> Result<(Vec<f64>, Vec<f64>), PlotError> {
    let cfg = TsneConfig {
        perplexity,
        ..TsneConfig::default()
    };
    validate(x, n, dim, &cfg)?;
    let d = squared_distances(x, n, dim);
    Ok(conditional_from_distances(&d, n, perplexity))
}

fn conditional_from_distances(d: &[f64], n: usize, perplexity: f64) -> (Vec<f64>, Vec<f64>) {
    let target = perplexity.ln();
    let mut p = vec![0.0f64; n * n];
    let betas: Vec<f64> = p
        .par_chunks_mut(n)
        .enumerate()
        .map(|(i, row)| calibrate_row(&d[i * n..(i + 1) * n], i, target, row))
        .collect();
    (p, betas)
}

/// Symmetrised joint probabilities: (P + P^T) / sum, clamped at `P_FLOOR` off the diagonal.
fn joint_probabilities(cond: &[f64], n: usize) -> Vec<f64> {
    let mut p = vec![0.0f64; n * n];
    p.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for (j, out) in row.iter_mut().enumerate() {
            *out = cond[i * n + j] + cond[j * n + i];
        }
    });
    let total: f64 = p
        .par_chunks(n)
        .map(|r| r.iter().sum::<f64>())
        .collect::<Vec<_>>()
        .iter()
        .sum();
    let total = total.max(f64::MIN_POSITIVE);
    p.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = if i == j {
                0.0
            } else {
                (*v / total).max(P_FLOOR)
            };
        }
    });
    p
}

/// SplitMix64: a small, fixed, seeded generator for the initialisation.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller; two draws per value, the second one is discarded).
    fn next_normal(&mut self) -> f64 {
        let u1 = self.next_open01();
        let u2 = self.next_open01();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Per-row quantities of one gradient evaluation.
#[derive(Clone, Copy, Default)]
struct RowTerms {
    /// sum_j num_ij (num_ij = 1 / (1 + |y_i - y_j|^2), j != i).
    z: f64,
    /// sum_j p_ij num_ij (y_i - y_j).
    a: [f64; 2],
    /// sum_j num_ij^2 (y_i - y_j).
    b: [f64; 2],
    /// sum_j p_ij ln num_ij (only when the KL divergence is wanted).
    p_ln_num: f64,
}

fn row_terms(p: &[f64], y: &[[f64; 2]], n: usize, with_kl: bool) -> Vec<RowTerms> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            let yi = y[i];
            let prow = &p[i * n..(i + 1) * n];
            let mut t = RowTerms::default();
            // j = i is included on purpose: it adds num = 1 to z (taken off below) and zero
            // to everything else (y_i - y_i = 0, p_ii = 0), so the loop has no branch.
            for (yj, &pij) in y.iter().zip(prow) {
                let dx = yi[0] - yj[0];
                let dy = yi[1] - yj[1];
                let num = 1.0 / (1.0 + dx * dx + dy * dy);
                t.z += num;
                let pn = pij * num;
                t.a[0] += pn * dx;
                t.a[1] += pn * dy;
                let nn = num * num;
                t.b[0] += nn * dx;
                t.b[1] += nn * dy;
            }
            t.z -= 1.0;
            if with_kl {
                for (yj, &pij) in y.iter().zip(prow) {
                    let dx = yi[0] - yj[0];
                    let dy = yi[1] - yj[1];
                    t.p_ln_num -= pij * (1.0 + dx * dx + dy * dy).ln();
                }
            }
            t
        })
        .collect()
}

fn tsne_impl(
    x: &[f32],
    n: usize,
    dim: usize,
    cfg: &TsneConfig,
    every: Option<usize>,
) -> Result<(Vec<[f64; 2]>, TsneTrace), PlotError> {
    validate(x, n, dim, cfg)?;
    let d = squared_distances(x, n, dim);
    let (cond, _) = conditional_from_distances(&d, n, cfg.perplexity);
    drop(d);
    let p = joint_probabilities(&cond, n);
    drop(cond);
    // Constant part of the KL divergence: sum p ln p, and sum p (about 1).
    let (p_ln_p, p_sum) = p
        .par_chunks(n)
        .map(|r| {
            r.iter()
                .filter(|&&v| v > 0.0)
                .fold((0.0, 0.0), |(a, s), &v| (a + v * v.ln(), s + v))
        })
        .collect::<Vec<_>>()
        .iter()
        .fold((0.0, 0.0), |(a, s), &(x, y)| (a + x, s + y));

    let mut rng = SplitMix64(cfg.seed);
    let mut y: Vec<[f64; 2]> = (0..n)
        .map(|_| [1e-4 * rng.next_normal(), 1e-4 * rng.next_normal()])
        .collect();
    let mut update = vec![[0.0f64; 2]; n];
    let mut gains = vec![[1.0f64; 2]; n];
    let lr = cfg.learning_rate_for(n);
    let explore = cfg.exaggeration_iterations();
    let mut trace = TsneTrace { kl: Vec::new() };

    // KL(P || Q) = sum p ln p - sum p ln num + (sum p) ln Z.
    let kl_of = |terms: &[RowTerms]| -> f64 {
        let z: f64 = terms.iter().map(|t| t.z).sum();
        let pln: f64 = terms.iter().map(|t| t.p_ln_num).sum();
        p_ln_p - pln + p_sum * z.ln()
    };

    for it in 0..cfg.iterations {
        let record = every.is_some_and(|e| it % e == 0);
        let terms = row_terms(&p, &y, n, record);
        if record {
            trace.kl.push((it, kl_of(&terms)));
        }
        let z: f64 = terms.iter().map(|t| t.z).sum();
        let (exag, momentum) = if it < explore {
            (cfg.early_exaggeration, 0.5)
        } else {
            (1.0, 0.8)
        };
        for i in 0..n {
            let t = &terms[i];
            for k in 0..2 {
                let grad = 4.0 * (exag * t.a[k] - t.b[k] / z);
                let g = &mut gains[i][k];
                // Delta-bar-delta: grow the gain when the gradient opposes the last update.
                if (grad > 0.0) != (update[i][k] > 0.0) {
                    *g += 0.2;
                } else {
                    *g *= 0.8;
                }
                *g = g.max(0.01);
                update[i][k] = momentum * update[i][k] - lr * *g * grad;
                y[i][k] += update[i][k];
            }
        }
        let mean = y.iter().fold([0.0, 0.0], |m, v| [m[0] + v[0], m[1] + v[1]]);
        let mean = [mean[0] / n as f64, mean[1] / n as f64];
        for v in y.iter_mut() {
            v[0] -= mean[0];
            v[1] -= mean[1];
        }
    }
    if every.is_some() {
        let terms = row_terms(&p, &y, n, true);
        let last = (cfg.iterations, kl_of(&terms));
        if trace.kl.last().map(|l| l.0) != Some(last.0) {
            trace.kl.push(last);
        }
    }
    if y.iter().any(|v| !(v[0].is_finite() && v[1].is_finite())) {
        return Err(PlotError::invalid(
            "t-SNE diverged (non-finite embedding): try a smaller learning rate",
        ));
    }
    Ok((y, trace))
}

/// KL(P || Q) of an embedding `y` of the points `x` (P as in [`tsne`], without exaggeration):
/// the objective t-SNE minimises; useful to compare embeddings.
pub fn kl_divergence(
    x: &[f32],
    n: usize,
    dim: usize,
    perplexity: f64,
    y: &[[f64; 2]],
) -> Result<f64, PlotError> {
    let cfg = TsneConfig {
        perplexity,
        ..TsneConfig::default()
    };
    validate(x, n, dim, &cfg)?;
    if y.len() != n {
        return Err(PlotError::invalid(format!(
            "kl_divergence: {} embedded points for {n} inputs",
            y.len()
        )));
    }
    let d = squared_distances(x, n, dim);
    let (cond, _) = conditional_from_distances(&d, n, perplexity);
    let p = joint_probabilities(&cond, n);
    let terms = row_terms(&p, y, n, true);
    let z: f64 = terms.iter().map(|t| t.z).sum();
    let mut kl = 0.0;
    for (i, t) in terms.iter().enumerate() {
        for &v in &p[i * n..(i + 1) * n] {
            if v > 0.0 {
                kl += v * v.ln();
            }
        }
        kl -= t.p_ln_num;
    }
    let p_sum: f64 = p.iter().sum();
    Ok(kl + p_sum * z.ln())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kl_at(p: &[f64], y: &[[f64; 2]], n: usize) -> f64 {
        let terms = row_terms(p, y, n, true);
        let z: f64 = terms.iter().map(|t| t.z).sum();
        let mut kl = 0.0;
        for (i, t) in terms.iter().enumerate() {
            for &v in &p[i * n..(i + 1) * n] {
                if v > 0.0 {
                    kl += v * v.ln();
                }
            }
            kl -= t.p_ln_num;
        }
        kl + p.iter().sum::<f64>() * z.ln()
    }

    /// The analytic gradient used by the descent equals central finite differences of
    /// KL(P || Q), and KL matches its definition sum p ln(p / q) computed directly.
    #[test]
    fn gradient_matches_finite_differences() {
        let n = 12;
        let dim = 5;
        let mut rng = SplitMix64(3);
        let x: Vec<f32> = (0..n * dim).map(|_| rng.next_normal() as f32).collect();
        let y: Vec<[f64; 2]> = (0..n)
            .map(|_| [rng.next_normal(), rng.next_normal()])
            .collect();
        let d = squared_distances(&x, n, dim);
        let (cond, _) = conditional_from_distances(&d, n, 4.0);
        let p = joint_probabilities(&cond, n);

        // KL from its definition.
        let mut num = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let (dx, dy) = (y[i][0] - y[j][0], y[i][1] - y[j][1]);
                    num[i * n + j] = 1.0 / (1.0 + dx * dx + dy * dy);
                }
            }
        }
        let z: f64 = num.iter().sum();
        let direct: f64 = (0..n * n)
            .filter(|&k| k / n != k % n)
            .map(|k| p[k] * (p[k] / (num[k] / z)).ln())
            .sum();
        let ours = kl_at(&p, &y, n);
        assert!((direct - ours).abs() < 1e-12, "{direct} vs {ours}");

        let terms = row_terms(&p, &y, n, false);
        let z: f64 = terms.iter().map(|t| t.z).sum();
        let h = 1e-6;
        for i in 0..n {
            for k in 0..2 {
                let analytic = 4.0 * (terms[i].a[k] - terms[i].b[k] / z);
                let mut yp = y.clone();
                yp[i][k] += h;
                let mut ym = y.clone();
                ym[i][k] -= h;
                let numeric = (kl_at(&p, &yp, n) - kl_at(&p, &ym, n)) / (2.0 * h);
                assert!(
                    (analytic - numeric).abs() < 1e-6 * (1.0 + analytic.abs()),
                    "point {i} axis {k}: {analytic} vs {numeric}"
                );
            }
        }
    }

    #[test]
    fn joint_probabilities_are_symmetric_and_sum_to_one() {
        let n = 9;
        let mut rng = SplitMix64(5);
        let x: Vec<f32> = (0..n * 3).map(|_| rng.next_normal() as f32).collect();
        let d = squared_distances(&x, n, 3);
        let (cond, _) = conditional_from_distances(&d, n, 3.0);
        let p = joint_probabilities(&cond, n);
        for i in 0..n {
            assert_eq!(p[i * n + i], 0.0);
            for j in 0..n {
                assert_eq!(p[i * n + j], p[j * n + i]);
                if i != j {
                    let want = (cond[i * n + j] + cond[j * n + i]) / (2.0 * n as f64);
                    assert!((p[i * n + j] - want.max(P_FLOOR)).abs() < 1e-15);
                }
            }
        }
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn gaussian_initialisation_has_the_requested_scale() {
        let mut rng = SplitMix64(11);
        let v: Vec<f64> = (0..20000).map(|_| 1e-4 * rng.next_normal()).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let std = (v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!(mean.abs() < 3e-6, "{mean}");
        assert!((std - 1e-4).abs() < 3e-6, "{std}");
    }
}
