//! Central finite-difference gradient checks in f64.
//!
//! `f` maps the inputs to any tensor; the check differentiates `sum(f(inputs) * w)` for a fixed
//! random weight `w` (so every output element matters, each with a different weight), compares
//! the autograd gradient of every float input with `(L(x + eps) - L(x - eps)) / (2 eps)`, and
//! reports the worst element. Integer inputs (indices) are passed through untouched.

use crate::{no_grad, DType, Error, Result, Tensor};

#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-6,
            atol: 1e-7,
            rtol: 1e-5,
            seed: 7,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Mismatch {
    pub input: usize,
    pub index: usize,
    pub analytic: f64,
    pub numeric: f64,
}

#[derive(Clone, Debug, Default)]
pub struct GradCheckReport {
    /// Largest |analytic - numeric| / (atol + rtol * |numeric|); at most 1 means the check passed.
    pub worst_ratio: f64,
    pub worst: Option<Mismatch>,
    pub checked: usize,
}

impl GradCheckReport {
    pub fn passed(&self) -> bool {
        self.worst_ratio <= 1.0 && self.checked > 0
    }
}

/// Runs the check; an `Err` means the function itself failed, a failed comparison is in the report.
pub fn check_gradients(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradCheck,
) -> Result<GradCheckReport> {
    for t in inputs {
        if t.dtype() == DType::F32 {
            return Err(Error::invalid(
                "gradcheck",
                "inputs must be f64 (or i64 indices) for a tight check",
            ));
        }
    }
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|t| {
            if t.dtype().is_float() {
                t.detach().with_requires_grad()
            } else {
                Ok(t.clone())
            }
        })
        .collect::<Result<_>>()?;
    let out = f(&leaves)?;
    let weight = Tensor::rand_uniform(
        out.shape().clone(),
        0.5,
        1.5,
        opts.seed,
        DType::F64,
        out.device(),
    )?;
    out.mul(&weight)?.sum_all()?.backward()?;

    let loss_at = |values: &[Vec<f64>]| -> Result<f64> {
        no_grad(|| {
            let ts: Vec<Tensor> = inputs
                .iter()
                .zip(values)
                .map(|(t, v)| {
                    if t.dtype().is_float() {
                        Tensor::from_vec(v.clone(), t.shape().clone(), t.device())
                    } else {
                        Ok(t.clone())
                    }
                })
                .collect::<Result<_>>()?;
            f(&ts)?.mul(&weight)?.sum_all()?.item()
        })
    };

    let mut values: Vec<Vec<f64>> = inputs
        .iter()
        .map(|t| t.to_f64_vec())
        .collect::<Result<_>>()?;
    let mut report = GradCheckReport::default();
    for (k, leaf) in leaves.iter().enumerate() {
        if !inputs[k].dtype().is_float() {
            continue;
        }
        let analytic = match leaf.grad() {
            Some(g) => g.to_f64_vec()?,
            None => vec![0.0; leaf.numel()],
        };
        for i in 0..leaf.numel() {
            let x = values[k][i];
            values[k][i] = x + opts.eps;
            let plus = loss_at(&values)?;
            values[k][i] = x - opts.eps;
            let minus = loss_at(&values)?;
            values[k][i] = x;
            let numeric = (plus - minus) / (2.0 * opts.eps);
            let err = (analytic[i] - numeric).abs();
            let ratio = if err.is_nan() {
                f64::INFINITY
            } else {
                err / (opts.atol + opts.rtol * numeric.abs())
            };
            report.checked += 1;
            if ratio > report.worst_ratio || report.worst.is_none() {
                report.worst_ratio = report.worst_ratio.max(ratio);
                report.worst = Some(Mismatch {
                    input: k,
                    index: i,
                    analytic: analytic[i],
                    numeric,
                });
            }
        }
    }
    Ok(report)
}

/// Panics with the worst mismatch when the gradients disagree (for tests).
pub fn assert_gradients(
    name: &str,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradCheck,
) {
    let report = check_gradients(f, inputs, opts)
        .unwrap_or_else(|e| panic!("gradcheck {name}: the function failed: {e}"));
    assert!(
        report.passed(),
        "gradcheck {name}: analytic and numeric gradients disagree (worst error {:.3}x tolerance at {:?}; {} elements checked)",
        report.worst_ratio,
        report.worst,
        report.checked
    );
}
