//! Central finite-difference gradient checks in f64.
//!
//! `f` maps the inputs to any tensor; the check differentiates `sum(f(inputs) * w)` for a fixed
//! random weight `w` (so every output element matters, each with a different weight), compares
//! the autograd gradient of every float input with `(L(x + eps) - L(x - eps)) / (2 eps)`, and
//! reports the worst element. Integer inputs (indices) are passed through untouched.
//!
//! [`check_parameter_gradients`] does the same for the parameters a model holds (a `ParamStore`'s
//! `params()`): it cannot rebuild them as new leaves, so it perturbs each element of each
//! parameter in place, in the parameter's own storage, and writes the original value back.

use crate::storage::{CpuStorage, Storage};
use crate::{no_grad, DType, Device, Error, Result, Tensor};
use std::fmt;

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
            let ratio = error_ratio(analytic[i], numeric, &opts);
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

/// |analytic - numeric| in units of the tolerance `atol + rtol |numeric|`: at most 1 passes; a
/// NaN on either side is infinitely wrong, and an exact match passes even with zero tolerance.
fn error_ratio(analytic: f64, numeric: f64, opts: &GradCheck) -> f64 {
    let err = (analytic - numeric).abs();
    if err.is_nan() {
        f64::INFINITY
    } else if err == 0.0 {
        0.0
    } else {
        err / (opts.atol + opts.rtol * numeric.abs())
    }
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

/// The worst element of a parameter check.
#[derive(Clone, Debug)]
pub struct ParamMismatch {
    /// The parameter's name, as given to the check.
    pub name: String,
    /// The element's index in row-major order.
    pub index: usize,
    pub analytic: f64,
    pub numeric: f64,
}

impl fmt::Display for ParamMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}]: analytic {} vs numeric {}",
            self.name, self.index, self.analytic, self.numeric
        )
    }
}

#[derive(Clone, Debug, Default)]
pub struct ParamGradReport {
    /// Largest |analytic - numeric| / (atol + rtol * |numeric|) (infinite for a NaN); at most 1
    /// means the check passed.
    pub worst_ratio: f64,
    pub worst: Option<ParamMismatch>,
    /// Number of elements compared, over all parameters.
    pub checked: usize,
    /// The names of the parameters checked, in the order given.
    pub names: Vec<String>,
    /// The parameters the backward pass did not reach (their gradient counted as zero).
    pub without_grad: Vec<String>,
}

impl ParamGradReport {
    pub fn passed(&self) -> bool {
        self.worst_ratio <= 1.0 && self.checked > 0
    }

    /// Panics with the worst mismatch when the check failed (for tests).
    pub fn assert_passed(&self, what: &str) {
        let worst = match &self.worst {
            Some(m) => m.to_string(),
            None => "nothing checked".to_string(),
        };
        assert!(
            self.passed(),
            "gradcheck {what}: analytic and numeric parameter gradients disagree (worst error {:.3}x tolerance at {worst}; {} elements checked)",
            self.worst_ratio,
            self.checked
        );
    }
}

/// Central finite differences with respect to every element of every parameter in `params`
/// (named, f64, on the CPU: a `ParamStore`'s `params()` or a selection of them), against autograd.
///
/// `loss` runs the model on fixed inputs and returns any tensor `out`; the function checked is
/// `L = sum(out * w)` for a fixed random `w` (uniform in [0.5, 1.5], seeded by `opts.seed`, as in
/// [`check_gradients`]), except that a one-element `out` is taken as the loss itself (a weight
/// would only rescale it). The parameters' gradients are reset, `L` is differentiated once, and
/// then each element is set to `x + eps` and `x - eps` in place, `L` evaluated under [`no_grad`],
/// and `x` written back exactly. A parameter the backward pass does not reach has a zero
/// gradient (listed in `without_grad`). An `Err` means a parameter is not f64 on the CPU or the
/// loss itself failed; a failed comparison is in the report.
pub fn check_parameter_gradients(
    params: &[(String, Tensor)],
    loss: impl FnMut() -> Result<Tensor>,
    opts: GradCheck,
) -> Result<ParamGradReport> {
    check_parameter_gradients_strided(params, loss, opts, |_, _| 1)
}

/// [`check_parameter_gradients`] on a sample of the elements, for models too large to check
/// every one: elements `0, s, 2 s, ...` of each parameter, with `s = stride(name, numel)`
/// (taken as 1 when 0).
pub fn check_parameter_gradients_strided(
    params: &[(String, Tensor)],
    mut loss: impl FnMut() -> Result<Tensor>,
    opts: GradCheck,
    stride: impl Fn(&str, usize) -> usize,
) -> Result<ParamGradReport> {
    for (name, p) in params {
        if p.dtype() != DType::F64 || p.device() != Device::Cpu {
            return Err(Error::invalid(
                "check_parameter_gradients",
                format!(
                    "parameter {name} is {} on {}: the check perturbs f64 CPU parameters in place \
                     (build the model in f64 on the CPU for it)",
                    p.dtype(),
                    p.device()
                ),
            ));
        }
    }
    for (_, p) in params {
        p.zero_grad();
    }
    let out = loss()?;
    let weight = if out.numel() == 1 {
        None
    } else {
        Some(Tensor::rand_uniform(
            out.shape().clone(),
            0.5,
            1.5,
            opts.seed,
            DType::F64,
            out.device(),
        )?)
    };
    let scalar = |out: Tensor| -> Result<Tensor> {
        match &weight {
            Some(w) => out.mul(w)?.sum_all(),
            None => out.sum_all(),
        }
    };
    scalar(out)?.backward()?;
    let mut value = || -> Result<f64> { no_grad(|| scalar(loss()?)?.item()) };

    let mut report = ParamGradReport::default();
    for (name, p) in params {
        report.names.push(name.clone());
        let n = p.numel();
        let analytic = match p.grad() {
            Some(g) => g.to_f64_vec()?,
            None => {
                report.without_grad.push(name.clone());
                vec![0.0; n]
            }
        };
        for i in (0..n).step_by(stride(name, n).max(1)) {
            let x = read_elem(p, i);
            write_elem(p, i, x + opts.eps);
            let plus = value();
            write_elem(p, i, x - opts.eps);
            let minus = value();
            write_elem(p, i, x);
            let numeric = (plus? - minus?) / (2.0 * opts.eps);
            let ratio = error_ratio(analytic[i], numeric, &opts);
            report.checked += 1;
            if ratio > report.worst_ratio || report.worst.is_none() {
                report.worst_ratio = report.worst_ratio.max(ratio);
                report.worst = Some(ParamMismatch {
                    name: name.clone(),
                    index: i,
                    analytic: analytic[i],
                    numeric,
                });
            }
        }
    }
    Ok(report)
}

/// Runs [`check_parameter_gradients`] and panics with the worst mismatch (parameter name,
/// element, analytic and numeric values) when the gradients disagree; returns the report for
/// further assertions (names, counts).
pub fn assert_parameter_gradients(
    name: &str,
    params: &[(String, Tensor)],
    loss: impl FnMut() -> Result<Tensor>,
    opts: GradCheck,
) -> ParamGradReport {
    let report = check_parameter_gradients(params, loss, opts)
        .unwrap_or_else(|e| panic!("gradcheck {name}: the check failed to run: {e}"));
    report.assert_passed(name);
    report
}

fn read_elem(p: &Tensor, i: usize) -> f64 {
    match &*p.storage() {
        Storage::Cpu(CpuStorage::F64(v)) => v[i],
        _ => unreachable!("parameters are checked to be f64 CPU tensors first"),
    }
}

fn write_elem(p: &Tensor, i: usize, x: f64) {
    match &mut *p.storage_mut() {
        Storage::Cpu(CpuStorage::F64(v)) => v[i] = x,
        _ => unreachable!("parameters are checked to be f64 CPU tensors first"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(dims: &[usize], seed: u64) -> Tensor {
        Tensor::rand_uniform(dims.to_vec(), -1.0, 1.0, seed, DType::F64, Device::Cpu)
            .unwrap()
            .with_requires_grad()
            .unwrap()
    }

    /// W (3, 2) and b (2) of a tiny linear layer, and a batch of 4 inputs.
    fn linear() -> (Vec<(String, Tensor)>, Tensor) {
        let params = vec![
            ("w".to_string(), param(&[3, 2], 1)),
            ("b".to_string(), param(&[2], 2)),
        ];
        let x = Tensor::rand_uniform(vec![4, 3], -1.0, 1.0, 3, DType::F64, Device::Cpu).unwrap();
        (params, x)
    }

    #[test]
    fn parameter_check_passes_on_a_linear_layer_and_restores_the_values() {
        let (ps, x) = linear();
        let (w, b) = (ps[0].1.clone(), ps[1].1.clone());
        let before: Vec<Vec<f64>> = ps.iter().map(|(_, p)| p.to_f64_vec().unwrap()).collect();
        let report = assert_parameter_gradients(
            "tanh(x W + b)",
            &ps,
            || x.matmul(&w)?.add(&b)?.tanh(),
            GradCheck::default(),
        );
        assert_eq!(report.checked, 8);
        assert_eq!(report.names, ["w", "b"]);
        assert!(report.without_grad.is_empty());
        assert!(report.worst_ratio < 0.1, "{report:?}");
        for ((_, p), was) in ps.iter().zip(&before) {
            let now = p.to_f64_vec().unwrap();
            assert!(now.iter().zip(was).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        // A one-element output is the loss itself.
        let report = check_parameter_gradients(
            &ps,
            || x.matmul(&w)?.add(&b)?.tanh()?.square()?.mean_all(),
            GradCheck::default(),
        )
        .unwrap();
        assert!(report.passed(), "{report:?}");
    }

    #[test]
    fn parameter_check_fails_when_part_of_the_graph_is_detached() {
        let (ps, x) = linear();
        let (w, b) = (ps[0].1.clone(), ps[1].1.clone());
        // x W + x W.detach() + b: autograd sees half of W's gradient, finite differences all.
        let report = check_parameter_gradients(
            &ps,
            || x.matmul(&w)?.add(&x.matmul(&w.detach())?)?.add(&b),
            GradCheck::default(),
        )
        .unwrap();
        assert!(!report.passed());
        assert!(report.worst_ratio > 1.0);
        let worst = report.worst.unwrap();
        assert_eq!(worst.name, "w");
        assert!(
            (worst.analytic - worst.numeric / 2.0).abs() < 1e-6,
            "{worst}"
        );
    }

    #[test]
    fn a_parameter_without_gradient_counts_as_zero() {
        let (mut ps, x) = linear();
        let (w, b) = (ps[0].1.clone(), ps[1].1.clone());
        let unused = param(&[2], 4);
        let detached = param(&[2], 5);
        ps.push(("unused".to_string(), unused));
        // Not reached at all: a zero gradient, and the loss does not depend on it.
        let report = assert_parameter_gradients(
            "unused parameter",
            &ps,
            || x.matmul(&w)?.add(&b),
            GradCheck::default(),
        );
        assert_eq!(report.without_grad, ["unused"]);
        assert_eq!(report.checked, 10);
        // Reached only through a detached path: zero analytic, nonzero numeric gradient.
        ps.push(("detached".to_string(), detached.clone()));
        let report = check_parameter_gradients(
            &ps,
            || x.matmul(&w)?.add(&b)?.add(&detached.detach()),
            GradCheck::default(),
        )
        .unwrap();
        assert_eq!(report.without_grad, ["unused", "detached"]);
        assert!(!report.passed());
        let worst = report.worst.unwrap();
        assert_eq!((worst.name.as_str(), worst.analytic), ("detached", 0.0));
    }

    #[test]
    #[should_panic(expected = "analytic and numeric parameter gradients disagree")]
    fn assert_parameter_gradients_panics_on_a_wrong_gradient() {
        let (ps, x) = linear();
        let (w, b) = (ps[0].1.clone(), ps[1].1.clone());
        assert_parameter_gradients(
            "detached",
            &ps,
            || x.matmul(&w)?.add(&x.matmul(&w.detach())?)?.add(&b),
            GradCheck::default(),
        );
    }

    #[test]
    fn nan_fails_the_parameter_check() {
        let (ps, x) = linear();
        let (w, b) = (ps[0].1.clone(), ps[1].1.clone());
        // log of the negative entries of W: NaN in both gradients.
        let report =
            check_parameter_gradients(&ps, || x.matmul(&w.log()?)?.add(&b), GradCheck::default())
                .unwrap();
        assert!(!report.passed());
        assert_eq!(report.worst_ratio, f64::INFINITY);
    }

    #[test]
    fn strided_parameter_check_and_f32_parameters() {
        let (ps, x) = linear();
        let (w, b) = (ps[0].1.clone(), ps[1].1.clone());
        let report = check_parameter_gradients_strided(
            &ps,
            || x.matmul(&w)?.add(&b)?.tanh(),
            GradCheck::default(),
            |name, _| if name == "w" { 4 } else { 0 },
        )
        .unwrap();
        // W: elements 0 and 4; b: every element (a stride of 0 counts as 1).
        assert_eq!(report.checked, 4);
        assert!(report.passed(), "{report:?}");

        let w32 = w
            .to_dtype(DType::F32)
            .unwrap()
            .detach()
            .with_requires_grad()
            .unwrap();
        let err = check_parameter_gradients(
            &[("w32".to_string(), w32.clone())],
            || x.to_dtype(DType::F32)?.matmul(&w32),
            GradCheck::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("w32") && err.contains("f64"), "{err}");
    }
}
