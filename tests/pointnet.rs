//! Point-cloud ops (PointNet++) on the CPU: farthest point sampling against a naive reference
//! and its defining properties (first index, distinct picks, the farthest property, seeded
//! start, duplicates), ball query against brute force (scan order, repeat of the first hit, the
//! no-neighbour rule), grouping and neighbourhood max-pool values and f64 gradient checks, and
//! the error cases.

mod common;
use common::*;
use rcmcl::engine::ops::dropout::dropout_uniform;
use rcmcl::engine::ops::pointnet::{
    ball_query, farthest_point_sample, group_points, group_points_grad, neighbour_max_pool,
};
use rcmcl::engine::{DType, Device, Error, Tensor};

fn d2(p: &[f64], c: &[f64]) -> f64 {
    let (dx, dy, dz) = (p[0] - c[0], p[1] - c[1], p[2] - c[2]);
    (dx * dx + dy * dy) + dz * dz
}

/// Naive FPS of one cloud: each step recomputes every point's distance to every chosen point
/// and takes the first point with the largest minimum.
fn naive_fps(p: &[f64], m: usize, start: usize) -> Vec<i64> {
    let n = p.len() / 3;
    let mut chosen = vec![start];
    while chosen.len() < m {
        let mut best = (-1.0, 0);
        for i in 0..n {
            let d = chosen
                .iter()
                .map(|&c| d2(&p[3 * i..3 * i + 3], &p[3 * c..3 * c + 3]))
                .fold(f64::INFINITY, f64::min);
            if d > best.0 {
                best = (d, i);
            }
        }
        chosen.push(best.1);
    }
    chosen.into_iter().map(|i| i as i64).collect()
}

fn ivalues(t: &Tensor) -> Vec<i64> {
    t.to_vec::<i64>().unwrap()
}

#[test]
fn fps_matches_the_naive_reference_at_odd_sizes() {
    for (k, &n) in [1usize, 33, 1023, 4097].iter().enumerate() {
        for &m in &[1usize, 31] {
            let m = m.min(n);
            let b = 2;
            let pts = rand64(&[b, n, 3], 10 + k as u64);
            let p = values(&pts);
            for seed in [None, Some(7u64)] {
                let got = ivalues(&farthest_point_sample(&pts, m, seed).unwrap());
                for bi in 0..b {
                    let start = seed.map_or(0, |s| {
                        ((dropout_uniform(s, bi as u64) * n as f64) as usize).min(n - 1)
                    });
                    let want = naive_fps(&p[bi * n * 3..(bi + 1) * n * 3], m, start);
                    assert_eq!(
                        &got[bi * m..(bi + 1) * m],
                        &want[..],
                        "n {n} m {m} {seed:?}"
                    );
                }
            }
            // f32 agrees with f64 on these well-separated random points.
            let got32 = farthest_point_sample(&pts.to_dtype(DType::F32).unwrap(), m, None).unwrap();
            let got64 = farthest_point_sample(&pts, m, None).unwrap();
            assert_eq!(ivalues(&got32), ivalues(&got64), "n {n} m {m} f32");
        }
    }
}

#[test]
fn fps_properties() {
    let (b, n, m) = (3, 500, 64);
    let pts = rand64(&[b, n, 3], 3);
    let p = values(&pts);
    let out = farthest_point_sample(&pts, m, None).unwrap();
    assert_eq!(out.dims(), &[b, m]);
    assert_eq!(out.dtype(), DType::I64);
    assert!(!out.requires_grad());
    let idx = ivalues(&out);
    for bi in 0..b {
        let c = &p[bi * n * 3..(bi + 1) * n * 3];
        let sel = &idx[bi * m..(bi + 1) * m];
        assert_eq!(sel[0], 0, "the first index is 0 by default");
        let mut sorted = sel.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), m, "distinct points give distinct picks");
        // Each pick maximises the minimum distance to those before it.
        for j in 1..m {
            let mind = |i: usize| {
                sel[..j]
                    .iter()
                    .map(|&s| d2(&c[3 * i..3 * i + 3], &c[3 * s as usize..3 * s as usize + 3]))
                    .fold(f64::INFINITY, f64::min)
            };
            let best = (0..n).map(mind).fold(0.0, f64::max);
            assert_eq!(mind(sel[j] as usize), best, "cloud {bi} step {j}");
        }
    }
    // A seeded start is in range, differs between clouds for some seed, and is reproducible.
    let a = ivalues(&farthest_point_sample(&pts, m, Some(42)).unwrap());
    let again = ivalues(&farthest_point_sample(&pts, m, Some(42)).unwrap());
    assert_eq!(a, again);
    for bi in 0..b {
        let want = ((dropout_uniform(42, bi as u64) * n as f64) as usize).min(n - 1);
        assert_eq!(a[bi * m], want as i64);
    }
    // M = N takes every point exactly once.
    let all = ivalues(&farthest_point_sample(&rand64(&[1, 33, 3], 4), 33, None).unwrap());
    let mut s = all.clone();
    s.sort();
    assert_eq!(s, (0..33).collect::<Vec<i64>>());
}

#[test]
fn fps_with_duplicate_points_repeats_the_lowest_index() {
    // Points 0 and 1 coincide, as do 2 and 3: two distinct positions.
    let p = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0];
    let pts = t64(&p, &[1, 4, 3]);
    // Step 1 takes 2 (the lowest of the two farthest); then every distance is 0 and the lowest
    // index, 0, is taken again and again.
    assert_eq!(
        ivalues(&farthest_point_sample(&pts, 4, None).unwrap()),
        vec![0, 2, 0, 0]
    );
    // One point: N = M = 1.
    let one = t64(&[0.5, -0.5, 2.0], &[1, 1, 3]);
    assert_eq!(
        ivalues(&farthest_point_sample(&one, 1, None).unwrap()),
        vec![0]
    );
    // No origin special case: a point at the origin can be picked.
    let p = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9];
    let pts = t64(&p, &[1, 3, 3]);
    assert_eq!(
        ivalues(&farthest_point_sample(&pts, 2, None).unwrap()),
        vec![0, 1]
    );
}

#[test]
fn fps_errors() {
    let pts = rand64(&[2, 5, 3], 1);
    assert!(matches!(
        farthest_point_sample(&pts, 6, None),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        farthest_point_sample(&rand64(&[2, 5, 2], 1), 2, None),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        farthest_point_sample(&rand64(&[5, 3], 1), 2, None),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        farthest_point_sample(&idx(&[0; 6], &[1, 2, 3]), 1, None),
        Err(Error::DType { .. })
    ));
    assert_eq!(
        farthest_point_sample(&pts, 0, None).unwrap().dims(),
        &[2, 0]
    );
}

/// Brute-force ball query of one centre.
fn naive_ball(p: &[f64], c: &[f64], r2: f64, ns: usize) -> Vec<i64> {
    let n = p.len() / 3;
    let hits: Vec<i64> = (0..n)
        .filter(|&i| d2(&p[3 * i..3 * i + 3], c) < r2)
        .map(|i| i as i64)
        .take(ns)
        .collect();
    if hits.is_empty() {
        let mut best = (f64::INFINITY, 0);
        for i in 0..n {
            let d = d2(&p[3 * i..3 * i + 3], c);
            if d < best.0 {
                best = (d, i);
            }
        }
        return vec![best.1 as i64; ns];
    }
    let mut out = hits.clone();
    out.resize(ns, hits[0]);
    out
}

#[test]
fn ball_query_matches_brute_force() {
    for (k, &n) in [1usize, 33, 1023, 4097].iter().enumerate() {
        for &m in &[1usize, 31] {
            for &ns in &[1usize, 16, 33] {
                let b = 2;
                let pts = rand64(&[b, n, 3], 20 + k as u64);
                // Half the centres are points of the cloud, half random (some far away).
                let mut c = values(&rand64_in(&[b, m, 3], -3.0, 3.0, 30 + m as u64));
                let p = values(&pts);
                for bi in 0..b {
                    for j in (0..m).step_by(2) {
                        let src = (j * 7) % n;
                        let at = (bi * m + j) * 3;
                        c[at..at + 3]
                            .copy_from_slice(&p[(bi * n + src) * 3..(bi * n + src) * 3 + 3]);
                    }
                }
                let ctr = t64(&c, &[b, m, 3]);
                let radius = 0.5;
                let got = ivalues(&ball_query(&pts, &ctr, radius, ns).unwrap());
                for bi in 0..b {
                    for j in 0..m {
                        let want = naive_ball(
                            &p[bi * n * 3..(bi + 1) * n * 3],
                            &c[(bi * m + j) * 3..(bi * m + j) * 3 + 3],
                            radius * radius,
                            ns,
                        );
                        let at = (bi * m + j) * ns;
                        assert_eq!(&got[at..at + ns], &want[..], "n {n} m {m} ns {ns}");
                    }
                }
            }
        }
    }
}

#[test]
fn ball_query_by_hand() {
    // Points on a line at x = 0, 1, 2, 3, 10.
    let p = [0.0, 1.0, 2.0, 3.0, 10.0]
        .iter()
        .flat_map(|&x| [x, 0.0, 0.0])
        .collect::<Vec<f64>>();
    let pts = t64(&p, &[1, 5, 3]);
    let ctr = t64(&[1.0, 0.0, 0.0, 10.0, 0.0, 0.0, 6.4, 0.0, 0.0], &[1, 3, 3]);
    let out = ball_query(&pts, &ctr, 1.5, 4).unwrap();
    assert_eq!(out.dims(), &[1, 3, 4]);
    assert_eq!(
        ivalues(&out),
        vec![
            0, 1, 2, 0, // hits 0, 1, 2 in scan order; the last slot repeats the first hit
            4, 4, 4, 4, // only itself
            3, 3, 3, 3, // no point within 1.5 of 6.4: the nearest (x = 3, distance 3.4)
        ]
    );
    // d^2 < r^2 is strict: with radius 1 the centre at x = 1 does not reach 0 or 2.
    let out = ball_query(&pts, &ctr, 1.0, 2).unwrap();
    assert_eq!(&ivalues(&out)[..2], &[1, 1]);
    // Errors: radius, nsample, batch mismatch, dtype mismatch.
    assert!(matches!(
        ball_query(&pts, &ctr, 0.0, 2),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        ball_query(&pts, &ctr, f64::NAN, 2),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        ball_query(&pts, &ctr, 1.0, 0),
        Err(Error::Invalid { .. })
    ));
    let two = rand64(&[2, 3, 3], 1);
    assert!(matches!(
        ball_query(&pts, &two, 1.0, 2),
        Err(Error::Shape { .. })
    ));
    let c32 = ctr.to_dtype(DType::F32).unwrap();
    assert!(matches!(
        ball_query(&pts, &c32, 1.0, 2),
        Err(Error::DTypeMismatch { .. })
    ));
}

/// Indices in `0..n` for (b, m, s), with repeats.
fn rand_idx(b: usize, m: usize, s: usize, n: usize, seed: u64) -> Tensor {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let v: Vec<i64> = (0..b * m * s)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as i64
        })
        .collect();
    idx(&v, &[b, m, s])
}

#[test]
fn group_points_values_and_gradients() {
    let (b, c, n, m, s) = (2, 3, 7, 4, 5);
    let f = rand64(&[b, c, n], 1);
    let ix = rand_idx(b, m, s, n, 2);
    let out = group_points(&f, &ix).unwrap();
    assert_eq!(out.dims(), &[b, c, m, s]);
    let (fv, iv, ov) = (values(&f), ivalues(&ix), values(&out));
    for bi in 0..b {
        for ci in 0..c {
            for k in 0..m * s {
                let want = fv[(bi * c + ci) * n + iv[bi * m * s + k] as usize];
                assert_eq!(ov[(bi * c + ci) * m * s + k], want);
            }
        }
    }
    gradcheck(
        "group_points",
        |t| group_points(&t[0], &ix),
        std::slice::from_ref(&f),
    );
    // The backward op and its own backward (the grouping).
    let g = rand64(&[b, c, m, s], 3);
    gradcheck(
        "group_points_grad",
        |t| group_points_grad(&t[0], &ix, n),
        std::slice::from_ref(&g),
    );
    // Its values: a naive scatter-add.
    let gv = values(&g);
    let mut want = vec![0.0; b * c * n];
    for bi in 0..b {
        for ci in 0..c {
            for k in 0..m * s {
                want[(bi * c + ci) * n + iv[bi * m * s + k] as usize] +=
                    gv[(bi * c + ci) * m * s + k];
            }
        }
    }
    assert_close(
        &values(&group_points_grad(&g, &ix, n).unwrap()),
        &want,
        1e-14,
    );
    // Odd sizes.
    for &(n, m, s) in &[(1usize, 1usize, 1usize), (33, 31, 16), (1023, 1, 33)] {
        let f = rand64(&[1, 2, n], 5);
        let ix = rand_idx(1, m, s, n, 6);
        gradcheck("group_points odd", |t| group_points(&t[0], &ix), &[f]);
    }
}

#[test]
fn group_points_errors() {
    let f = rand64(&[2, 3, 7], 1);
    assert!(matches!(
        group_points(&f, &idx(&[0, 7], &[2, 1, 1])),
        Err(Error::Index {
            index: 7,
            size: 7,
            ..
        })
    ));
    assert!(matches!(
        group_points(&f, &idx(&[0, -1], &[2, 1, 1])),
        Err(Error::Index { index: -1, .. })
    ));
    assert!(matches!(
        group_points(&f, &idx(&[0], &[1, 1, 1])),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        group_points(&f, &idx(&[0, 0], &[2, 1])),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(group_points(&f, &f), Err(Error::DType { .. })));
    assert!(matches!(
        group_points_grad(&rand64(&[2, 3, 1, 2], 1), &idx(&[0; 2], &[2, 1, 1]), 7),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn neighbour_max_pool_values_ties_nan_and_gradients() {
    let x = t64(
        &[
            1.0,
            3.0,
            3.0,
            2.0,
            -1.0,
            -5.0,
            -1.0,
            -2.0,
            0.0,
            f64::NAN,
            4.0,
            f64::NAN,
        ],
        &[1, 1, 3, 4],
    );
    let (v, a) = neighbour_max_pool(&x).unwrap();
    assert_eq!(v.dims(), &[1, 1, 3]);
    assert_eq!(a.dtype(), DType::I64);
    let vv = values(&v);
    assert_eq!(&vv[..2], &[3.0, -1.0]);
    assert!(vv[2].is_nan());
    assert_eq!(
        ivalues(&a),
        vec![1, 0, 1],
        "ties: lowest position; NaN: the first"
    );
    // Gradient to the argmax only.
    let x = rand64(&[2, 3, 5, 7], 4).with_requires_grad().unwrap();
    let (v, a) = neighbour_max_pool(&x).unwrap();
    let g = rand64(&[2, 3, 5], 5);
    v.backward_with(&g).unwrap();
    let (gx, av, gv) = (values(&x.grad().unwrap()), ivalues(&a), values(&g));
    for r in 0..30 {
        for k in 0..7 {
            let want = if k as i64 == av[r] { gv[r] } else { 0.0 };
            assert_eq!(gx[r * 7 + k], want);
        }
    }
    for &(m, s) in &[(1usize, 1usize), (31, 16), (1, 33)] {
        gradcheck(
            "neighbour_max_pool",
            |t| Ok(neighbour_max_pool(&t[0])?.0),
            &[rand64(&[2, 3, m, s], 6)],
        );
    }
    assert!(matches!(
        neighbour_max_pool(&rand64(&[2, 3, 4, 0], 1)),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        neighbour_max_pool(&rand64(&[3, 4, 5], 1)),
        Err(Error::Shape { .. })
    ));
    let _ = Device::Cpu;
}
