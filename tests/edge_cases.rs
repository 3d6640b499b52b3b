//! Degenerate inputs (empty dimensions, scalars, single elements) through every op: each call
//! returns a value or an error, never a panic.

mod common;
use common::*;
use rcmcl::engine::{DType, Device, Reduction, Result, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};

type Case = (&'static str, Box<dyn Fn(&Tensor) -> Result<Tensor>>);

fn cases() -> Vec<Case> {
    let idx0 = || Tensor::from_vec(Vec::<i64>::new(), [0], Device::Cpu).unwrap();
    let idx0 = std::sync::Arc::new(idx0);
    let idx1 = idx0.clone();
    vec![
        ("exp", Box::new(|x| x.exp())),
        ("relu", Box::new(|x| x.relu())),
        ("add_self", Box::new(|x| x.add(x))),
        ("sum_all", Box::new(|x| x.sum_all())),
        ("sum_0", Box::new(|x| x.sum(&[0], false))),
        ("sum_last", Box::new(|x| x.sum(&[-1], true))),
        ("mean_all", Box::new(|x| x.mean_all())),
        ("max_all", Box::new(|x| x.max(&[], false))),
        ("var_all", Box::new(|x| x.var(&[], false, 1))),
        ("argmax_last", Box::new(|x| x.argmax(-1, false))),
        ("softmax", Box::new(|x| x.softmax(-1))),
        ("log_softmax_0", Box::new(|x| x.log_softmax(0))),
        ("transpose", Box::new(|x| x.transpose(0, -1))),
        ("narrow_0", Box::new(|x| x.narrow(0, 0, 0))),
        ("pad", Box::new(|x| x.pad(&vec![(1, 1); x.rank()], 0.0))),
        ("concat", Box::new(|x| Tensor::concat(&[x, x], 0))),
        ("stack", Box::new(|x| Tensor::stack(&[x, x], 0))),
        ("matmul_t", Box::new(|x| x.matmul(&x.transpose(-1, -2)?))),
        (
            "index_select_empty",
            Box::new(move |x| x.index_select(0, &idx1())),
        ),
        ("l2_normalize", Box::new(|x| x.l2_normalize(-1, 1e-12))),
        (
            "layer_norm",
            Box::new(|x| x.layer_norm(1, None, None, 1e-5)),
        ),
        (
            "batch_norm",
            Box::new(|x| x.batch_norm(None, None, None, None, true, 0.1, 1e-5)),
        ),
        ("dropout", Box::new(|x| x.dropout(0.5, 1, true))),
        (
            "permute",
            Box::new(|x| x.permute(&(0..x.rank()).rev().collect::<Vec<_>>())),
        ),
        ("reshape_flat", Box::new(|x| x.reshape([x.numel()]))),
        (
            "broadcast_to",
            Box::new(|x| x.broadcast_to(&[[2].as_slice(), x.dims()].concat())),
        ),
        ("where", Box::new(|x| Tensor::where_cond(x, x, x))),
        ("masked_fill", Box::new(|x| x.masked_fill(x, 1.0))),
        ("maximum", Box::new(|x| x.maximum(x))),
        ("clamp", Box::new(|x| x.clamp(-1.0, 1.0))),
        (
            "gather_self_index",
            Box::new(|x| x.gather(0, &x.to_dtype(DType::I64)?)),
        ),
        (
            "scatter_add",
            Box::new(|x| x.scatter_add(0, &x.to_dtype(DType::I64)?, x)),
        ),
        (
            "index_add_empty",
            Box::new(move |x| x.index_add(0, &idx0(), &x.narrow(0, 0, 0)?)),
        ),
        (
            "linear",
            Box::new(|x| {
                let w = Tensor::ones([2, x.dims()[x.rank() - 1]], DType::F64, Device::Cpu)?;
                Tensor::linear(x, &w, None)
            }),
        ),
        ("mse", Box::new(|x| x.mse_loss(x, Reduction::Mean))),
        (
            "cross_entropy",
            Box::new(|x| {
                let n = x.dims()[0];
                x.cross_entropy(
                    &Tensor::zeros([n], DType::I64, Device::Cpu)?,
                    Reduction::Mean,
                    0.0,
                )
            }),
        ),
        (
            "backward_sum",
            Box::new(|x| {
                let leaf = x.detach().with_requires_grad()?;
                leaf.sum_all()?.backward()?;
                Ok(leaf.grad().unwrap_or(leaf.clone()))
            }),
        ),
    ]
}

#[test]
fn degenerate_shapes_give_values_or_errors_never_panics() {
    let shapes: [&[usize]; 5] = [&[0, 3], &[3, 0], &[0, 0], &[1, 1], &[2, 1, 0]];
    let mut panics = Vec::new();
    // Integer tensors go through the float ops too: a dtype error each, never a panic.
    let inputs = shapes
        .iter()
        .flat_map(|d| [DType::F64, DType::I64].map(|t| (d.to_vec(), t)));
    for (dims, dtype) in inputs.chain([(vec![2, 3], DType::I64), (vec![3], DType::I64)]) {
        let x = Tensor::full(dims.clone(), 1.0, dtype, Device::Cpu).unwrap();
        for (name, f) in cases() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(&x))) {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                panics.push(format!(
                    "{name} on {dims:?} {dtype}: {}",
                    msg.unwrap_or_default()
                ));
            }
        }
    }
    assert!(panics.is_empty(), "ops panicked:\n{}", panics.join("\n"));
}

#[test]
fn scalars_work_where_they_make_sense() {
    let s = t64(&[2.0], &[]);
    assert_eq!(s.exp().unwrap().item().unwrap(), 2f64.exp());
    assert_eq!(s.sum_all().unwrap().item().unwrap(), 2.0);
    assert_eq!(s.add(&rand64(&[3], 1)).unwrap().dims(), &[3]);
    assert!(s.softmax(0).is_err());
    assert!(s.transpose(0, 1).is_err());
    gradcheck(
        "scalar mul",
        |t| t[0].mul(&t[1]),
        &[s.clone(), rand64(&[2, 2], 2)],
    );
}

#[test]
fn sums_over_empty_axes_are_zero() {
    let x = Tensor::zeros([0, 3], DType::F64, Device::Cpu).unwrap();
    assert_eq!(values(&x.sum(&[0], false).unwrap()), vec![0.0; 3]);
    assert_eq!(x.sum(&[1], false).unwrap().dims(), &[0]);
    assert_eq!(x.sum_all().unwrap().item().unwrap(), 0.0);
    assert!(
        x.mean_all().is_err(),
        "the mean of nothing is an error, not NaN"
    );
    assert!(x.max(&[0], false).is_err());
}
