//! 3D convolution and pooling on the CPU: forward values against naive loops written here,
//! f64 finite-difference gradients for the input, weight, bias and pooling inputs at odd sizes
//! and every kernel shape the models use ((1,k,k), (k,1,1), (9,1,1), ...), and the error cases.

mod common;
use common::*;
use rcmcl::engine::ops::conv::{Conv3dParams, Pool3dParams};
use rcmcl::engine::{DType, Device, Error, Tensor};

/// Naive conv3d: y[n,o,z,y,x] = b[o] + sum_{c,a,bb,e} x[n,c,z*s-p+a,...] w[o,c,a,bb,e].
fn naive_conv(
    x: &[f64],
    xd: &[usize],
    w: &[f64],
    wd: &[usize],
    b: Option<&[f64]>,
    s: [usize; 3],
    p: [usize; 3],
) -> (Vec<f64>, Vec<usize>) {
    let (n, ci, co) = (xd[0], xd[1], wd[0]);
    let i = [xd[2], xd[3], xd[4]];
    let k = [wd[2], wd[3], wd[4]];
    let o: Vec<usize> = (0..3)
        .map(|a| (i[a] + 2 * p[a] - k[a]) / s[a] + 1)
        .collect();
    let od = vec![n, co, o[0], o[1], o[2]];
    let mut y = vec![0.0; od.iter().product()];
    for (q, v) in y.iter_mut().enumerate() {
        let u = unravel(q, &od);
        let mut acc = b.map_or(0.0, |b| b[u[1]]);
        for c in 0..ci {
            for a in 0..k[0] {
                for bb in 0..k[1] {
                    for e in 0..k[2] {
                        let z = (u[2] * s[0] + a) as isize - p[0] as isize;
                        let yy = (u[3] * s[1] + bb) as isize - p[1] as isize;
                        let xx = (u[4] * s[2] + e) as isize - p[2] as isize;
                        if z < 0 || yy < 0 || xx < 0 {
                            continue;
                        }
                        let (z, yy, xx) = (z as usize, yy as usize, xx as usize);
                        if z >= i[0] || yy >= i[1] || xx >= i[2] {
                            continue;
                        }
                        acc += x[ravel(&[u[0], c, z, yy, xx], xd)]
                            * w[ravel(&[u[1], c, a, bb, e], wd)];
                    }
                }
            }
        }
        *v = acc;
    }
    (y, od)
}

/// Naive pooling: max (padding excluded, NaN wins) or average (padding as zeros, / kvol).
fn naive_pool(x: &[f64], xd: &[usize], p: &Pool3dParams, max: bool) -> (Vec<f64>, Vec<usize>) {
    let i = [xd[2], xd[3], xd[4]];
    let k = p.kernel;
    let o: Vec<usize> = (0..3)
        .map(|a| (i[a] + 2 * p.padding[a] - k[a]) / p.stride[a] + 1)
        .collect();
    let od = vec![xd[0], xd[1], o[0], o[1], o[2]];
    let mut y = vec![0.0; od.iter().product()];
    for (q, v) in y.iter_mut().enumerate() {
        let u = unravel(q, &od);
        let mut acc = if max { f64::NEG_INFINITY } else { 0.0 };
        for a in 0..k[0] {
            for b in 0..k[1] {
                for e in 0..k[2] {
                    let pos: Vec<isize> = (0..3)
                        .map(|ax| {
                            (u[2 + ax] * p.stride[ax] + [a, b, e][ax]) as isize
                                - p.padding[ax] as isize
                        })
                        .collect();
                    if (0..3).any(|ax| pos[ax] < 0 || pos[ax] as usize >= i[ax]) {
                        continue;
                    }
                    let val = x[ravel(
                        &[
                            u[0],
                            u[1],
                            pos[0] as usize,
                            pos[1] as usize,
                            pos[2] as usize,
                        ],
                        xd,
                    )];
                    if max {
                        if val.is_nan() || acc.is_nan() {
                            acc = f64::NAN;
                        } else {
                            acc = acc.max(val);
                        }
                    } else {
                        acc += val;
                    }
                }
            }
        }
        *v = if max {
            acc
        } else {
            acc / (k[0] * k[1] * k[2]) as f64
        };
    }
    (y, od)
}

/// Distinct values (spaced 0.05 apart, shuffled): no ties for max pooling, even after a
/// finite-difference step.
fn distinct(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut idx: Vec<usize> = (0..n).collect();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in (1..n).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        idx.swap(i, (s >> 33) as usize % (i + 1));
    }
    let v: Vec<f64> = idx
        .iter()
        .map(|&j| j as f64 * 0.05 - n as f64 * 0.025)
        .collect();
    t64(&v, dims)
}

/// (input dims, weight dims, stride, padding): channels 1, 3, 5; spatial 1, 7, 9; kernels
/// (1,3,3), (3,1,1), (9,1,1), (2,3,1), (1,1,1); strides 1 and 2; padding 0 and 1.
/// (input dims, weight dims, stride, padding).
type Case = ([usize; 5], [usize; 5], [usize; 3], [usize; 3]);

fn conv_cases() -> Vec<Case> {
    vec![
        ([2, 3, 3, 7, 7], [5, 3, 1, 3, 3], [1, 1, 1], [0, 1, 1]),
        ([1, 5, 7, 3, 3], [3, 5, 3, 1, 1], [1, 1, 1], [1, 0, 0]),
        ([2, 1, 9, 4, 1], [3, 1, 9, 1, 1], [1, 1, 1], [4, 0, 0]),
        ([1, 3, 4, 5, 3], [1, 3, 2, 3, 1], [2, 2, 1], [1, 1, 0]),
        ([2, 3, 1, 7, 9], [5, 3, 1, 1, 1], [1, 2, 2], [0, 0, 0]),
        ([1, 1, 5, 9, 7], [1, 1, 3, 3, 3], [2, 2, 2], [1, 1, 1]),
        ([3, 5, 1, 1, 1], [3, 5, 1, 1, 1], [1, 1, 1], [0, 0, 0]),
        ([1, 3, 2, 2, 2], [5, 3, 3, 3, 3], [1, 1, 1], [1, 1, 1]),
    ]
}

#[test]
fn conv3d_forward_matches_naive_loops() {
    for (t, (xd, wd, s, p)) in conv_cases().into_iter().enumerate() {
        let x = rand64(&xd, 10 + t as u64);
        let w = rand64(&wd, 20 + t as u64);
        let b = rand64(&[wd[0]], 30 + t as u64);
        let (want, od) = naive_conv(&values(&x), &xd, &values(&w), &wd, Some(&values(&b)), s, p);
        let y = x.conv3d(&w, Some(&b), Conv3dParams::new(s, p)).unwrap();
        assert_eq!(y.dims(), od.as_slice(), "case {t}");
        assert_close(&values(&y), &want, 1e-12);
        let (want, _) = naive_conv(&values(&x), &xd, &values(&w), &wd, None, s, p);
        let y = x.conv3d(&w, None, Conv3dParams::new(s, p)).unwrap();
        assert_close(&values(&y), &want, 1e-12);
        // f32 agrees with the f64 reference to f32 rounding.
        let y32 = x
            .to_dtype(DType::F32)
            .unwrap()
            .conv3d(
                &w.to_dtype(DType::F32).unwrap(),
                None,
                Conv3dParams::new(s, p),
            )
            .unwrap();
        assert_eq!(y32.dtype(), DType::F32);
        assert_close(&values(&y32), &want, 1e-5);
    }
}

#[test]
fn conv3d_hand_computed() {
    // A (1,1,1,1,3) input [1,2,3] with a (1,1,1,1,2) kernel [10, 1] and bias 0.5:
    // [1*10 + 2 + 0.5, 2*10 + 3 + 0.5]; with padding 1: [0 + 1 + .5, 12.5, 23.5, 30 + 0 + .5].
    let x = t64(&[1.0, 2.0, 3.0], &[1, 1, 1, 1, 3]);
    let w = t64(&[10.0, 1.0], &[1, 1, 1, 1, 2]);
    let b = t64(&[0.5], &[1]);
    let y = x.conv3d(&w, Some(&b), Conv3dParams::default()).unwrap();
    assert_close(&values(&y), &[12.5, 23.5], 0.0);
    let y = x
        .conv3d(&w, Some(&b), Conv3dParams::new([1, 1, 1], [0, 0, 1]))
        .unwrap();
    assert_close(&values(&y), &[1.5, 12.5, 23.5, 30.5], 0.0);
}

#[test]
fn conv3d_gradients() {
    for (t, (xd, wd, s, p)) in conv_cases().into_iter().enumerate() {
        let x = rand64(&xd, 40 + t as u64);
        let w = rand64(&wd, 50 + t as u64);
        let b = rand64(&[wd[0]], 60 + t as u64);
        let params = Conv3dParams::new(s, p);
        gradcheck(
            &format!("conv3d case {t}"),
            |v| v[0].conv3d(&v[1], Some(&v[2]), params),
            &[x.clone(), w.clone(), b],
        );
        gradcheck(
            &format!("conv3d no bias case {t}"),
            |v| v[0].conv3d(&v[1], None, params),
            &[x, w],
        );
    }
}

#[test]
fn conv3d_covers_st_gcn_temporal() {
    // ST-GCN's (9, 1) temporal convolution on (N, C, T, V) as 3D on (N, C, T, V, 1).
    let (n, c, t, v) = (2, 3, 12, 5);
    let x = rand64(&[n, c, t, v], 1);
    let w = rand64(&[4, c, 9, 1], 2);
    let y = x
        .reshape([n, c, t, v, 1])
        .unwrap()
        .conv3d(
            &w.reshape([4, c, 9, 1, 1]).unwrap(),
            None,
            Conv3dParams::new([1, 1, 1], [4, 0, 0]),
        )
        .unwrap();
    assert_eq!(y.dims(), &[n, 4, t, v, 1]);
    let (want, _) = naive_conv(
        &values(&x),
        &[n, c, t, v, 1],
        &values(&w),
        &[4, c, 9, 1, 1],
        None,
        [1; 3],
        [4, 0, 0],
    );
    assert_close(&values(&y), &want, 1e-12);
}

fn pool_cases() -> Vec<([usize; 5], Pool3dParams)> {
    vec![
        ([2, 3, 4, 6, 6], Pool3dParams::new([2, 2, 2])),
        (
            [1, 2, 5, 7, 7],
            Pool3dParams::new([3, 3, 3])
                .with_stride([2, 2, 2])
                .with_padding([1, 1, 1]),
        ),
        (
            [1, 1, 9, 1, 7],
            Pool3dParams::new([3, 1, 2]).with_stride([1, 1, 2]),
        ),
        (
            [2, 1, 1, 5, 5],
            Pool3dParams::new([1, 3, 3])
                .with_stride([1, 1, 1])
                .with_padding([0, 1, 1]),
        ),
        ([1, 3, 7, 1, 1], Pool3dParams::new([1, 1, 1])),
    ]
}

#[test]
fn pooling_forward_matches_naive_loops() {
    for (t, (xd, p)) in pool_cases().into_iter().enumerate() {
        let x = distinct(&xd, t as u64);
        let (want, od) = naive_pool(&values(&x), &xd, &p, true);
        let (y, arg) = x.max_pool3d_with_indices(p).unwrap();
        assert_eq!(y.dims(), od.as_slice());
        assert_eq!(arg.dtype(), DType::I64);
        assert_close(&values(&y), &want, 0.0);
        // The index points at the maximum inside the plane.
        let xv = values(&x);
        let plane: usize = xd[2..].iter().product();
        let out_plane: usize = od[2..].iter().product();
        for (q, &a) in values(&arg).iter().enumerate() {
            assert_eq!(xv[q / out_plane * plane + a as usize], want[q]);
        }
        let (want, _) = naive_pool(&values(&x), &xd, &p, false);
        assert_close(&values(&x.avg_pool3d(p).unwrap()), &want, 1e-12);
    }
}

#[test]
fn avg_pool_counts_padding() {
    // (1,1,1,1,2) input [4, 8], kernel (1,1,3), stride 1, padding 1: windows [0,4,8] and [4,8,0]
    // divided by 3 (count_include_pad).
    let x = t64(&[4.0, 8.0], &[1, 1, 1, 1, 2]);
    let p = Pool3dParams::new([1, 1, 3])
        .with_stride([1, 1, 1])
        .with_padding([0, 0, 1]);
    assert_close(&values(&x.avg_pool3d(p).unwrap()), &[4.0, 4.0], 1e-15);
    assert_close(&values(&x.max_pool3d(p).unwrap()), &[8.0, 8.0], 0.0);
}

#[test]
fn max_pool_propagates_nan() {
    let x = t64(&[1.0, f64::NAN, 3.0, 2.0], &[1, 1, 1, 1, 4]);
    let y = x.max_pool3d(Pool3dParams::new([1, 1, 2])).unwrap();
    let v = values(&y);
    assert!(v[0].is_nan());
    assert_eq!(v[1], 3.0);
    let x = x.with_requires_grad().unwrap();
    let (y, arg) = x
        .max_pool3d_with_indices(Pool3dParams::new([1, 1, 2]))
        .unwrap();
    assert_eq!(values(&arg), vec![1.0, 2.0]);
    y.sum_all().unwrap().backward().unwrap();
    assert_close(&values(&x.grad().unwrap()), &[0.0, 1.0, 1.0, 0.0], 0.0);
}

#[test]
fn pooling_gradients() {
    for (t, (xd, p)) in pool_cases().into_iter().enumerate() {
        let x = distinct(&xd, 100 + t as u64);
        gradcheck(
            &format!("max_pool3d case {t}"),
            |v| v[0].max_pool3d(p),
            std::slice::from_ref(&x),
        );
        gradcheck(
            &format!("avg_pool3d case {t}"),
            |v| v[0].avg_pool3d(p),
            &[x],
        );
    }
    gradcheck(
        "global_avg_pool3d",
        |v| v[0].global_avg_pool3d(),
        &[rand64(&[2, 3, 3, 4, 5], 9)],
    );
}

#[test]
fn global_avg_pool_is_the_volume_mean() {
    let x = rand64(&[2, 3, 3, 4, 5], 3);
    let y = x.global_avg_pool3d().unwrap();
    assert_eq!(y.dims(), &[2, 3]);
    let xv = values(&x);
    let want: Vec<f64> = (0..6)
        .map(|i| xv[i * 60..(i + 1) * 60].iter().sum::<f64>() / 60.0)
        .collect();
    assert_close(&values(&y), &want, 1e-13);
}

#[test]
fn conv_and_pool_errors() {
    let shape_err = |r: Result<Tensor, Error>| match r {
        Err(Error::Shape { op, .. }) => op,
        other => panic!("expected a shape error, got {other:?}"),
    };
    let x = rand64(&[1, 3, 4, 4, 4], 1);
    let w = rand64(&[2, 3, 3, 3, 3], 2);
    let p = Conv3dParams::default();
    assert_eq!(
        shape_err(x.conv3d(&rand64(&[2, 4, 3, 3, 3], 3), None, p)),
        "conv3d"
    );
    assert_eq!(
        shape_err(x.conv3d(&rand64(&[2, 3, 3, 3], 3), None, p)),
        "conv3d"
    );
    assert_eq!(
        shape_err(rand64(&[3, 4, 4, 4], 1).conv3d(&w, None, p)),
        "conv3d"
    );
    assert_eq!(shape_err(x.conv3d(&w, Some(&rand64(&[3], 4)), p)), "conv3d");
    assert_eq!(
        shape_err(x.conv3d(&rand64(&[2, 3, 5, 1, 1], 3), None, p)),
        "conv3d"
    );
    assert_eq!(
        shape_err(x.conv3d(&w, None, Conv3dParams::new([0, 1, 1], [0; 3]))),
        "conv3d"
    );
    assert!(matches!(
        x.conv3d(&w.to_dtype(DType::F32).unwrap(), None, p),
        Err(Error::DTypeMismatch { .. })
    ));
    let ints = Tensor::zeros([1, 1, 2, 2, 2], DType::I64, Device::Cpu).unwrap();
    assert!(matches!(
        ints.max_pool3d(Pool3dParams::new([1, 1, 1])),
        Err(Error::DType { .. })
    ));
    assert_eq!(
        shape_err(x.max_pool3d(Pool3dParams::new([5, 1, 1]))),
        "max_pool3d"
    );
    assert_eq!(
        shape_err(x.avg_pool3d(Pool3dParams::new([2, 2, 2]).with_padding([2, 0, 0]))),
        "avg_pool3d"
    );
    assert_eq!(
        shape_err(rand64(&[4, 4], 1).avg_pool3d(Pool3dParams::new([1, 1, 1]))),
        "avg_pool3d"
    );
    assert_eq!(
        shape_err(rand64(&[4, 4], 1).global_avg_pool3d()),
        "global_avg_pool3d"
    );
}
