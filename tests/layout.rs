//! Layout copies (permute, transpose, narrow, pad, concat, stack, squeeze): forward values by
//! hand and against a naive index-by-index reference (small and parallel-sized tensors),
//! gradients against finite differences, and the errors for bad arguments.

mod common;
use common::*;
use rcmcl::engine::{DType, Device, Error, Tensor};

/// 0, 1, 2, ... as f64, so every element says where it came from.
fn iota(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    t64(&(0..n).map(|i| i as f64).collect::<Vec<_>>(), dims)
}

fn naive_permute(x: &[f64], dims: &[usize], perm: &[usize]) -> Vec<f64> {
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    (0..x.len())
        .map(|o| {
            let oi = unravel(o, &out_dims);
            let mut ii = vec![0; dims.len()];
            for (k, &p) in perm.iter().enumerate() {
                ii[p] = oi[k];
            }
            x[ravel(&ii, dims)]
        })
        .collect()
}

fn naive_pad(x: &[f64], dims: &[usize], pads: &[(usize, usize)], value: f64) -> Vec<f64> {
    let out_dims: Vec<usize> = dims.iter().zip(pads).map(|(d, p)| p.0 + d + p.1).collect();
    let n: usize = out_dims.iter().product();
    (0..n)
        .map(|o| {
            let oi = unravel(o, &out_dims);
            let inside = oi
                .iter()
                .zip(pads)
                .zip(dims)
                .all(|((&i, p), &d)| i >= p.0 && i < p.0 + d);
            if inside {
                let ii: Vec<usize> = oi.iter().zip(pads).map(|(&i, p)| i - p.0).collect();
                x[ravel(&ii, dims)]
            } else {
                value
            }
        })
        .collect()
}

#[test]
fn transpose_and_permute_values() {
    let x = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let xt = x.t().unwrap();
    assert_eq!(xt.dims(), &[3, 2]);
    assert_eq!(values(&xt), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    assert_eq!(values(&x.transpose(0, -1).unwrap()), values(&xt));

    // (2, 3, 4) -> (4, 2, 3): out[i][j][k] = x[j][k][i] = 12 j + 4 k + i.
    let y = iota(&[2, 3, 4]).permute(&[2, 0, 1]).unwrap();
    assert_eq!(y.dims(), &[4, 2, 3]);
    let v = values(&y);
    assert_eq!(&v[..6], &[0.0, 4.0, 8.0, 12.0, 16.0, 20.0]);
    assert_eq!(&v[6..12], &[1.0, 5.0, 9.0, 13.0, 17.0, 21.0]);
    assert_eq!(v[23], 23.0);

    // A batch of matrices is transposed each.
    let b = iota(&[2, 2, 3]).t().unwrap();
    assert_eq!(b.dims(), &[2, 3, 2]);
    assert_eq!(
        values(&b),
        vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0, 6.0, 9.0, 7.0, 10.0, 8.0, 11.0]
    );

    // Index tensors permute too, keeping their dtype.
    let i = idx(&[1, 2, 3, 4, 5, 6], &[3, 2]).t().unwrap();
    assert_eq!(i.dtype(), DType::I64);
    assert_eq!(i.to_vec::<i64>().unwrap(), vec![1, 3, 5, 2, 4, 6]);
}

#[test]
fn permute_matches_naive_reference() {
    // Odd sizes, size-1 axes, identity suffixes (contiguous runs) and a parallel-sized tensor.
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 5, 7], &[0, 2, 1]),
        (&[3, 5, 7], &[1, 0, 2]),
        (&[2, 1, 3, 4], &[3, 1, 0, 2]),
        (&[4, 3, 2, 5], &[2, 3, 0, 1]),
        (&[1, 7, 1], &[2, 0, 1]),
        (&[64, 70, 33], &[1, 2, 0]),
        (&[40, 30, 50], &[1, 0, 2]),
    ];
    for (seed, &(dims, perm)) in cases.iter().enumerate() {
        let x = rand64(dims, seed as u64);
        let got = values(&x.permute(perm).unwrap());
        assert_eq!(
            got,
            naive_permute(&values(&x), dims, perm),
            "{dims:?} {perm:?}"
        );
        // f32 takes the same kernel with 4-byte elements.
        let x32 = x.to_dtype(DType::F32).unwrap();
        let got32 = values(&x32.permute(perm).unwrap());
        let want32 = naive_permute(&values(&x32), dims, perm);
        assert_eq!(got32, want32, "f32 {dims:?} {perm:?}");
    }
}

#[test]
fn narrow_values() {
    let x = iota(&[3, 4]);
    assert_eq!(
        values(&x.narrow(1, 1, 2).unwrap()),
        vec![1.0, 2.0, 5.0, 6.0, 9.0, 10.0]
    );
    assert_eq!(
        values(&x.narrow(0, 2, 1).unwrap()),
        vec![8.0, 9.0, 10.0, 11.0]
    );
    assert_eq!(x.narrow(-1, 3, 1).unwrap().dims(), &[3, 1]);
    assert_eq!(x.narrow(0, 1, 0).unwrap().dims(), &[0, 4]);
    // A parallel-sized narrow of the middle axis.
    let dims = [50, 60, 30];
    let big = rand64(&dims, 5);
    let got = values(&big.narrow(1, 7, 41).unwrap());
    let src = values(&big);
    let mut want = Vec::new();
    for i in 0..50 {
        for j in 7..48 {
            for k in 0..30 {
                want.push(src[ravel(&[i, j, k], &dims)]);
            }
        }
    }
    assert_eq!(got, want);
}

/// Input dims and per-dimension (before, after) pads.
type PadCase<'a> = (&'a [usize], &'a [(usize, usize)]);

#[test]
fn pad_values() {
    let x = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let p = x.pad(&[(1, 0), (0, 2)], 9.0).unwrap();
    assert_eq!(p.dims(), &[3, 4]);
    assert_eq!(
        values(&p),
        vec![9.0, 9.0, 9.0, 9.0, 1.0, 2.0, 9.0, 9.0, 3.0, 4.0, 9.0, 9.0]
    );
    let cases: &[PadCase] = &[
        (&[3, 4, 5], &[(0, 0), (1, 2), (0, 0)]),
        (&[3, 4, 5], &[(2, 1), (0, 0), (0, 3)]),
        (&[2, 3, 4], &[(0, 1), (1, 0), (2, 2)]),
        (&[5], &[(3, 4)]),
        (&[60, 40, 20], &[(1, 1), (0, 0), (2, 0)]),
    ];
    for (seed, &(dims, pads)) in cases.iter().enumerate() {
        let x = rand64(dims, 20 + seed as u64);
        let got = values(&x.pad(pads, -0.5).unwrap());
        assert_eq!(
            got,
            naive_pad(&values(&x), dims, pads, -0.5),
            "{dims:?} {pads:?}"
        );
    }
    let i = idx(&[7, 8], &[2]).pad(&[(1, 1)], 0.0).unwrap();
    assert_eq!(i.to_vec::<i64>().unwrap(), vec![0, 7, 8, 0]);
}

#[test]
fn concat_stack_and_squeeze_values() {
    let a = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let b = t64(&[5.0, 6.0], &[2, 1]);
    let c = Tensor::concat(&[&a, &b], 1).unwrap();
    assert_eq!(c.dims(), &[2, 3]);
    assert_eq!(values(&c), vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
    let r = Tensor::concat(&[&a, &b.t().unwrap(), &a], -2).unwrap();
    assert_eq!(r.dims(), &[5, 2]);
    assert_eq!(
        values(&r),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 2.0, 3.0, 4.0]
    );

    let u = t64(&[1.0, 2.0, 3.0], &[3]);
    let v = t64(&[4.0, 5.0, 6.0], &[3]);
    let s0 = Tensor::stack(&[&u, &v], 0).unwrap();
    assert_eq!(s0.dims(), &[2, 3]);
    assert_eq!(values(&s0), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let s1 = Tensor::stack(&[&u, &v], -1).unwrap();
    assert_eq!(s1.dims(), &[3, 2]);
    assert_eq!(values(&s1), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);

    let e = u.unsqueeze(0).unwrap();
    assert_eq!(e.dims(), &[1, 3]);
    assert_eq!(u.unsqueeze(-1).unwrap().dims(), &[3, 1]);
    assert_eq!(e.squeeze(0).unwrap().dims(), &[3]);
    assert!(e.same_storage(&u), "unsqueeze is a reshape");

    // A parallel-sized concat against the naive definition.
    let x = rand64(&[40, 30, 20], 1);
    let y = rand64(&[40, 17, 20], 2);
    let got = values(&Tensor::concat(&[&x, &y], 1).unwrap());
    let (xv, yv) = (values(&x), values(&y));
    let mut want = Vec::new();
    for i in 0..40 {
        want.extend_from_slice(&xv[i * 600..(i + 1) * 600]);
        want.extend_from_slice(&yv[i * 340..(i + 1) * 340]);
    }
    assert_eq!(got, want);
}

#[test]
fn layout_gradients() {
    let x = rand64(&[2, 3, 4], 1);
    gradcheck(
        "permute",
        |t| t[0].permute(&[2, 0, 1]),
        std::slice::from_ref(&x),
    );
    gradcheck(
        "transpose",
        |t| t[0].transpose(0, 2),
        std::slice::from_ref(&x),
    );
    gradcheck("t", |t| t[0].t(), &[rand64(&[3, 5], 2)]);
    gradcheck("narrow", |t| t[0].narrow(1, 1, 2), std::slice::from_ref(&x));
    gradcheck(
        "narrow_last",
        |t| t[0].narrow(-1, 3, 1),
        std::slice::from_ref(&x),
    );
    gradcheck(
        "pad",
        |t| t[0].pad(&[(1, 0), (0, 0), (2, 1)], 0.7),
        std::slice::from_ref(&x),
    );
    gradcheck(
        "concat",
        |t| Tensor::concat(&[&t[0], &t[1], &t[2]], 1),
        &[x.clone(), rand64(&[2, 1, 4], 3), rand64(&[2, 5, 4], 4)],
    );
    // The same tensor twice: both slices' gradients reach it.
    gradcheck(
        "concat_twice",
        |t| Tensor::concat(&[&t[0], &t[0].mul(&t[0])?], 0),
        &[rand64(&[3, 2], 5)],
    );
    gradcheck(
        "stack",
        |t| Tensor::stack(&[&t[0], &t[1]], -1),
        &[rand64(&[3, 2], 6), rand64(&[3, 2], 7)],
    );
    gradcheck(
        "squeeze_unsqueeze",
        |t| t[0].unsqueeze(1)?.mul(&t[1])?.squeeze(0),
        &[rand64(&[1, 3], 8), rand64(&[1, 1, 3], 9)],
    );
    // Narrowing after padding composes both backward rules.
    gradcheck(
        "pad_then_narrow",
        |t| t[0].pad(&[(2, 2), (1, 0)], 0.0)?.narrow(0, 1, 4),
        &[rand64(&[3, 2], 10)],
    );
}

#[test]
fn layout_errors() {
    let x = rand64(&[2, 3], 1);
    let err = x.permute(&[0, 0]).unwrap_err();
    assert!(matches!(err, Error::Shape { op: "permute", .. }), "{err}");
    assert!(x.permute(&[1]).is_err());
    assert!(x.permute(&[0, 2]).is_err());
    assert!(matches!(
        x.transpose(0, 2).unwrap_err(),
        Error::Axis {
            op: "transpose",
            axis: 2,
            rank: 2
        }
    ));
    assert!(matches!(
        rand64(&[4], 1).t().unwrap_err(),
        Error::Shape { op: "t", .. }
    ));
    assert!(matches!(
        x.narrow(-3, 0, 1).unwrap_err(),
        Error::Axis { op: "narrow", .. }
    ));
    let err = x.narrow(1, 2, 2).unwrap_err().to_string();
    assert!(
        err.contains("narrow") && err.contains("2..4") && err.contains("size 3"),
        "{err}"
    );
    assert!(x.narrow(1, usize::MAX, 2).is_err());
    assert!(matches!(
        x.pad(&[(1, 1)], 0.0).unwrap_err(),
        Error::Shape { op: "pad", .. }
    ));
    let err = Tensor::concat(&[&x, &rand64(&[3, 3], 2)], 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("concat") && err.contains("[2, 3]") && err.contains("[3, 3]"),
        "{err}"
    );
    assert!(Tensor::concat(&[&x, &rand64(&[2, 3, 1], 2)], 0).is_err());
    assert!(matches!(
        Tensor::concat(&[], 0).unwrap_err(),
        Error::Invalid { op: "concat", .. }
    ));
    let x32 = Tensor::ones([2, 3], DType::F32, Device::Cpu).unwrap();
    assert!(matches!(
        Tensor::concat(&[&x, &x32], 0).unwrap_err(),
        Error::DTypeMismatch { op: "concat", .. }
    ));
    assert!(Tensor::stack(&[&x, &rand64(&[3, 2], 2)], 0).is_err());
    assert!(matches!(
        Tensor::stack(&[&x], 3).unwrap_err(),
        Error::Axis { op: "stack", .. }
    ));
    assert!(matches!(
        x.squeeze(0).unwrap_err(),
        Error::Shape { op: "squeeze", .. }
    ));
    assert!(x.unsqueeze(3).is_err());
    assert_eq!(x.unsqueeze(2).unwrap().dims(), &[2, 3, 1]);
}
